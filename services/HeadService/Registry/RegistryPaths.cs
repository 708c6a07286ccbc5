using System.Globalization;
using Graft.ServiceDefaults;

namespace Graft.Heads.Registry;

/// <summary>How the registry names things on disk: <c>&lt;name&gt;/v&lt;N&gt;/</c> version folders, the
/// <c>&lt;name&gt;/active</c> pointer, and the <c>.tmp-</c> / <c>.deleted-</c> folders of unfinished work.</summary>
internal static class RegistryPaths
{
    public const string ActiveFileName = "active";
    public const string TempPrefix = ".tmp-";
    public const string DeletedPrefix = ".deleted-";

    public static string VersionDirectoryName(int version) => "v" + version.ToString(CultureInfo.InvariantCulture);

    public static bool TryParseVersionDirectory(string dirName, out int version)
    {
        version = 0;
        return dirName.Length > 1 && dirName[0] == 'v'
            && int.TryParse(dirName.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out version) && version > 0
            && dirName == VersionDirectoryName(version);
    }

    /// <summary>One more than the highest version folder of a head.</summary>
    public static int NextVersion(string headDir)
    {
        var max = 0;
        foreach (var dir in SafeEnumerateDirectories(headDir))
        {
            if (TryParseVersionDirectory(Path.GetFileName(dir), out var v))
            {
                max = Math.Max(max, v);
            }
        }
        return max + 1;
    }

    /// <summary>Sub-folders, or none when the folder vanished or cannot be read right now.</summary>
    public static IEnumerable<string> SafeEnumerateDirectories(string path)
    {
        try
        {
            return Directory.GetDirectories(path);
        }
        catch (Exception e) when (e is DirectoryNotFoundException or IOException)
        {
            return [];
        }
    }

    /// <summary>The version the <c>active</c> pointer names; 0 when there is none (the newest serves), and the
    /// text when it is unreadable.</summary>
    public static (int Version, string? BadText) ReadPointer(string headDir)
    {
        try
        {
            var text = File.ReadAllText(Path.Combine(headDir, ActiveFileName)).Trim();
            return int.TryParse(text.TrimStart('v'), NumberStyles.None, CultureInfo.InvariantCulture, out var version) && version > 0
                ? (version, null)
                : (0, text);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return (0, null); // No pointer yet: the newest version serves.
        }
        catch (IOException)
        {
            return (0, null); // Transient (e.g. a network volume hiccup); the next scan retries.
        }
    }

    /// <summary>The head's <c>serving.json</c>; null when it has none (a head written before versions per backbone),
    /// with the problem when it is unreadable (the legacy pointer then decides).</summary>
    public static (HeadServing? Serving, string? Problem) ReadServing(string headDir)
    {
        try
        {
            return (HeadServing.Parse(File.ReadAllText(Path.Combine(headDir, HeadServing.FileName))), null);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return (null, null);
        }
        catch (InvalidDataException e)
        {
            return (null, e.Message);
        }
        catch (IOException)
        {
            return (null, null); // Transient; the next scan retries.
        }
    }

    /// <summary>Replaces <c>serving.json</c>: a fsynced temporary file renamed over it.</summary>
    public static void WriteServing(string headDir, HeadServing serving)
    {
        var temp = Path.Combine(headDir, TempPrefix + "serving-" + Guid.NewGuid().ToString("N"));
        Durable.WriteNewFile(temp, System.Text.Encoding.UTF8.GetBytes(serving.ToJson()));
        File.Move(temp, Path.Combine(headDir, HeadServing.FileName), overwrite: true);
        Durable.FsyncDirectory(headDir);
    }

    /// <summary>Points a head at a version: a fsynced temporary file renamed over the pointer.</summary>
    public static void WritePointer(string headDir, int version)
    {
        var temp = Path.Combine(headDir, TempPrefix + "active-" + Guid.NewGuid().ToString("N"));
        Durable.WriteNewFile(temp, System.Text.Encoding.ASCII.GetBytes(version.ToString(CultureInfo.InvariantCulture) + "\n"));
        File.Move(temp, Path.Combine(headDir, ActiveFileName), overwrite: true);
        Durable.FsyncDirectory(headDir);
    }
}
