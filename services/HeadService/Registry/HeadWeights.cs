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
        return SafeTensors.Deserialize(ReadChecked(Path.Combine(entry.Directory, manifest.WeightsFile), "weights file", manifest.WeightsBytes, manifest.WeightsSha256));
    }

    /// <summary>Reads a fine-tuned version's tail (ONNX bytes) and checks it against the size and SHA-256 in its manifest.</summary>
    /// <exception cref="InvalidDataException">The tail is missing, truncated or corrupt.</exception>
    public static byte[] LoadTail(VersionEntry entry)
    {
        var manifest = entry.Manifest ?? throw new InvalidDataException(entry.Error ?? "head.json is unreadable.");
        return ReadChecked(Path.Combine(entry.Directory, manifest.TailFile), "tail file", manifest.TailBytes, manifest.TailSha256);
    }

    private static byte[] ReadChecked(string path, string what, long expectedBytes, string expectedSha)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"{what} cannot be read: {e.Message}", e);
        }
        if (bytes.Length != expectedBytes)
        {
            throw new InvalidDataException($"{what} is {bytes.Length} bytes but head.json says {expectedBytes} (truncated or replaced).");
        }
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (!string.Equals(sha, expectedSha, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{what} SHA-256 is {sha} but head.json says {expectedSha} (corrupt).");
        }
        return bytes;
    }
}
