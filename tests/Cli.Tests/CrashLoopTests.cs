using System.Text.RegularExpressions;

namespace Graft.Cli.Tests;

/// <summary>A service that cannot start is reported as a crash loop and stops the stack, instead of being restarted forever.</summary>
public sealed class CrashLoopTests
{
    [Fact]
    public async Task A_service_that_exits_at_every_start_stops_the_stack_with_its_own_message()
    {
        var folder = Directory.CreateTempSubdirectory("graft-crashloop-tests-").FullName;
        try
        {
            var basePort = GraftCli.FreeBasePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
            using var up = GraftCli.Start(folder, ["up", "--base-port", basePort, "--timeout", "900", "--max-restarts", "1"],
                new Dictionary<string, string> { ["Graft__Backbone__MaxBatchSize"] = "0" });
            var stdout = up.StandardOutput.ReadToEndAsync();
            var stderr = up.StandardError.ReadToEndAsync();
            using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            await up.WaitForExitAsync(limit.Token);
            var all = await stdout + await stderr;

            Assert.True(up.ExitCode == 3, all);
            Assert.Contains("Backbone is in a crash loop: it exited 2 times in a row", all, StringComparison.Ordinal);
            Assert.Contains("MaxBatchSize", all, StringComparison.Ordinal); // the service's own reason, from its log
            Assert.Single(Regex.Matches(all, @"^Backbone \(run \d+\) exited with code \d+ after .*; restarting in", RegexOptions.Multiline)); // one restart, then the stop
            Assert.DoesNotContain("Graft stack ready", all, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
