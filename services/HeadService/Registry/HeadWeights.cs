using System.Security.Cryptography;

namespace Graft.Heads.Registry;

/// <summary>Loading a version's weights, checked against the size and SHA-256 its manifest records.</summary>
public static class HeadWeights
{
    /// <summary>Reads a version's weights and checks them against the SHA-256 in its manifest.</summary>
    /// <exception cref="InvalidDataException">The version is missing, truncated or corrupt.</exception>
    public static IReadOnlyList<NamedTensor> Load(VersionEntry entry)
    {
        var manifest = entry.Manifest ?? throw new InvalidDataException(entry.Error ?? "head.json is unreadable.");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(Path.Combine(entry.Directory, manifest.WeightsFile));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"weights file cannot be read: {e.Message}", e);
        }
        if (bytes.Length != manifest.WeightsBytes)
        {
            throw new InvalidDataException($"weights file is {bytes.Length} bytes but head.json says {manifest.WeightsBytes} (truncated or replaced).");
        }
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (!string.Equals(sha, manifest.WeightsSha256, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"weights file SHA-256 is {sha} but head.json says {manifest.WeightsSha256} (corrupt).");
        }
        return SafeTensors.Deserialize(bytes);
    }
}
