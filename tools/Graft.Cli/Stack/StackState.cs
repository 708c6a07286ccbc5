using System.Text.Json;
using System.Text.Json.Serialization;
using Graft.Launcher;

namespace Graft.Cli.Stack;

/// <summary>What a running <c>graft up</c> publishes in <c>&lt;data-dir&gt;/stack.json</c> for <c>graft status</c>.</summary>
public sealed record StackState
{
    /// <summary>Process id of the <c>graft up</c> that wrote the file; a dead pid means a stale file.</summary>
    public int Pid { get; init; }

    public DateTimeOffset StartedAt { get; init; }

    public string Gateway { get; init; } = "";

    public int BasePort { get; init; }

    public List<ServiceStateEntry> Services { get; init; } = [];
}

/// <summary>One service in <see cref="StackState"/>.</summary>
public sealed record ServiceStateEntry
{
    public string Name { get; init; } = "";

    public ServiceState State { get; init; }

    public int? Pid { get; init; }

    /// <summary>When the current process started (uptime is measured from here).</summary>
    public DateTimeOffset StartedAt { get; init; }

    public int Restarts { get; init; }

    public int? LastExitCode { get; init; }

    public string Grpc { get; init; } = "";

    public string Http { get; init; } = "";

    public string Log { get; init; } = "";
}

/// <summary>Reads and writes <see cref="StackState"/>.</summary>
public static class StackStateFile
{
    public const string FileName = "stack.json";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, FileName);

    /// <summary>Writes a temporary file and renames it over the old one, so a reader never sees half a file.</summary>
    public static void Write(string path, StackState state)
    {
        var temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(state, Json));
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The state, or null when there is no file.</summary>
    public static StackState? Read(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<StackState>(File.ReadAllText(path), Json);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }
}
