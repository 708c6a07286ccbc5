using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Graft.Cli.Tests;

/// <summary>deploy/systemd/graft.service: valid for systemd, and in step with the real CLI and the publish layout.</summary>
public sealed partial class SystemdUnitTests
{
    private static readonly string UnitPath = Path.Combine(GraftCli.RepositoryRoot, "deploy", "systemd", "graft.service");

    /// <summary>Where deploy/publish.sh puts the CLI inside the published folder (installed as /opt/graft).</summary>
    private const string InstalledCli = "/opt/graft/cli/graft";

    [Fact]
    public async Task The_unit_passes_systemd_analyze_verify_with_the_published_cli_in_place()
    {
        if (!File.Exists("/usr/bin/systemd-analyze")) return; // No systemd here: the key checks below still run.
        // verify also checks that ExecStart's program exists: point it at the built CLI's executable.
        var cli = Path.Combine(Path.GetDirectoryName(GraftCli.Dll)!, "graft");
        var folder = Directory.CreateTempSubdirectory("graft-unit-").FullName;
        try
        {
            var unit = Path.Combine(folder, "graft.service");
            await File.WriteAllTextAsync(unit, (await File.ReadAllTextAsync(UnitPath)).Replace(InstalledCli, cli, StringComparison.Ordinal));
            var info = new ProcessStartInfo("/usr/bin/systemd-analyze", ["verify", unit]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var verify = Process.Start(info)!;
            var messages = await verify.StandardOutput.ReadToEndAsync() + await verify.StandardError.ReadToEndAsync();
            await verify.WaitForExitAsync();

            Assert.True(verify.ExitCode == 0 && messages.Trim().Length == 0, $"systemd-analyze verify: exit {verify.ExitCode}\n{messages}");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task The_unit_runs_graft_up_from_the_published_folder_with_options_the_cli_has()
    {
        var keys = ReadKeys(await File.ReadAllTextAsync(UnitPath));

        var execStart = keys["ExecStart"].Single().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(InstalledCli, execStart[0]);
        Assert.Equal("up", execStart[1]);
        Assert.Contains("publish tools/Graft.Cli/Graft.Cli.csproj cli\n", await File.ReadAllTextAsync(Path.Combine(GraftCli.RepositoryRoot, "deploy", "publish.sh")), StringComparison.Ordinal);
        var help = await GraftCli.RunAsync(Path.GetTempPath(), "up", "--help");
        foreach (var option in execStart.Where(a => a.StartsWith("--", StringComparison.Ordinal)))
            Assert.Contains(option, help.Stdout, StringComparison.Ordinal);

        // Data and logs in the usual places, passed to graft up.
        Assert.Equal("graft", keys["StateDirectory"].Single());
        Assert.Equal("graft", keys["LogsDirectory"].Single());
        Assert.Contains("--data-dir %S/graft", keys["ExecStart"].Single(), StringComparison.Ordinal);
        Assert.Contains("--log-dir %L/graft", keys["ExecStart"].Single(), StringComparison.Ordinal);

        // Restarted by systemd when graft up gives up; SIGTERM to graft up alone, which stops the services in order
        // (15 s each, three of them); the stop timeout leaves room for all three.
        Assert.Equal("on-failure", keys["Restart"].Single());
        Assert.Equal("mixed", keys["KillMode"].Single());
        Assert.Equal("SIGTERM", keys["KillSignal"].Single());
        var stopTimeout = int.Parse(StopTimeoutPattern().Match(keys["TimeoutStopSec"].Single()).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(stopTimeout > 3 * 15, $"TimeoutStopSec={stopTimeout}s does not leave graft up time to stop three services (15 s each)");
    }

    /// <summary>Key = values of a unit file (comments and section headers skipped; a key may repeat).</summary>
    private static Dictionary<string, List<string>> ReadKeys(string unit)
    {
        var keys = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var raw in unit.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] is '#' or ';' or '[') continue;
            var equals = line.IndexOf('=', StringComparison.Ordinal);
            var key = line[..equals].Trim();
            if (!keys.TryGetValue(key, out var values)) keys[key] = values = [];
            values.Add(line[(equals + 1)..].Trim());
        }
        return keys;
    }

    [GeneratedRegex(@"^(\d+)s?$")]
    private static partial Regex StopTimeoutPattern();
}
