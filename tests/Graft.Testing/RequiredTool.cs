namespace Graft.Testing;

/// <summary>A program some tests run (node, npm, kubectl, chromium). A missing one fails those tests with one line
/// naming the Debian package that provides it (the README's apt line installs them all; <c>.ci/run</c> does it
/// itself), never with an exception from deep inside <c>Process.Start</c>.</summary>
public sealed record RequiredTool(string Program, string Package)
{
    public static RequiredTool Node { get; } = new("node", "nodejs");

    public static RequiredTool Npm { get; } = new("npm", "npm");

    public static RequiredTool Kubectl { get; } = new("kubectl", "kubernetes-client");

    public static RequiredTool Chromium { get; } = new("chromium", "chromium");

    /// <summary>Where the program is (PATH, then /usr/bin), or null.</summary>
    public string? Find() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Append("/usr/bin")
            .Select(d => Path.Combine(d, Program))
            .FirstOrDefault(File.Exists);

    /// <summary>The program's path; when it is missing, the message says which package to install.</summary>
    public string Require() => Find() ?? throw new MissingToolException(this);
}

/// <summary>A program a test needs is not installed.</summary>
public sealed class MissingToolException(RequiredTool tool) : Exception(
    $"`{tool.Program}` is not installed: `apt-get install {tool.Package}` (or the README's one line: " +
    "`apt-get install nodejs npm kubernetes-client chromium`), then run the tests again.")
{
    public RequiredTool Tool { get; } = tool;

    // The message is the whole story: no stack trace in the test report.
    public override string? StackTrace => null;
}
