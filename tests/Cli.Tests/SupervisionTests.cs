using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Graft.V1;
using Xunit.Abstractions;

namespace Graft.Cli.Tests;

/// <summary>`graft up` as a server: a killed service comes back by itself under load, logs stay bounded,
/// `graft status` tells the story, and SIGTERM stops everything within the stop timeout.</summary>
[TestCaseOrderer(StepOrderer.TypeName, StepOrderer.AssemblyName)]
public sealed class SupervisionTests(SupervisedStackFixture stack, ITestOutputHelper output) : IClassFixture<SupervisedStackFixture>
{
    /// <summary>"Within a few seconds" on an idle machine; generous because the test host is shared (event-based waits).</summary>
    private static readonly TimeSpan RecoveryLimit = TimeSpan.FromSeconds(60);

    [Fact]
    [Step(Order = 1)]
    public async Task Each_service_killed_with_sigkill_under_predict_load_serves_again_by_itself_with_no_head_lost()
    {
        using var stop = new CancellationTokenSource();
        var outcomes = new List<(DateTimeOffset Started, bool Ok)>();
        var load = Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var started = DateTimeOffset.UtcNow;
                var ok = await stack.PredictOnceAsync(stop.Token);
                lock (outcomes) outcomes.Add((started, ok));
                if (!ok) await Task.Delay(20, CancellationToken.None);
            }
        })).ToList();

        try
        {
            foreach (var name in new[] { "Backbone", "Heads", "Gateway" })
            {
                var before = stack.Service(name);
                var pid = (int)before["pid"]!;
                var restarts = (int)before["restarts"]!;
                using var victim = Process.GetProcessById(pid);

                victim.Kill(); // SIGKILL
                await victim.WaitForExitAsync();
                var killedAt = DateTimeOffset.UtcNow;

                // Served again: a Predict started after the process was gone answers with the head trained before.
                using var limit = new CancellationTokenSource(RecoveryLimit);
                while (true)
                {
                    lock (outcomes)
                    {
                        if (outcomes.Any(o => o.Started > killedAt && o.Ok)) break;
                    }
                    await Task.Delay(50, limit.Token);
                }
                DateTimeOffset servedAgain;
                lock (outcomes) servedAgain = outcomes.Where(o => o.Started > killedAt && o.Ok).Min(o => o.Started);
                output.WriteLine($"{name}: SIGKILL of pid {pid}; Predict served again {(servedAgain - killedAt).TotalSeconds:0.00} s later");

                var after = stack.Service(name);
                Assert.NotEqual(pid, (int)after["pid"]!);
                Assert.Equal(restarts + 1, (int)after["restarts"]!);
                Assert.Equal(137, (int)after["lastExitCode"]!);

                // A Predict can be answered before the supervisor's own health probe has seen the new process serve
                // (the Gateway itself is probed on a timer): the next kill, and `graft status` in the next step, need
                // the supervisor to agree that the service is back.
                while ((string?)stack.Service(name)["state"] != "serving")
                    await Task.Delay(50, limit.Token);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(load);
        }

        var heads = await stack.Client.ListHeadsAsync(new ListHeadsRequest(), deadline: DateTime.UtcNow.AddSeconds(30));
        Assert.Equal(1, Assert.Single(heads.Heads, h => h.Name == SupervisedStackFixture.Head).ActiveVersion);
        Assert.Contains("exited with code 137", stack.UpOutput, StringComparison.Ordinal);
        Assert.Contains("is SERVING again", stack.UpOutput, StringComparison.Ordinal);
    }

    [Fact]
    [Step(Order = 2)]
    public async Task Graft_status_shows_each_service_with_its_pid_uptime_restarts_and_the_heads()
    {
        var run = await stack.Graft("status", "--data-dir", stack.DataDirectory);

        Assert.True(run.ExitCode == 0, run.ToString());
        foreach (var name in new[] { "Backbone", "Heads", "Gateway" })
        {
            var pid = ((int)stack.Service(name)["pid"]!).ToString(CultureInfo.InvariantCulture);
            Assert.Matches($@"{name}\s*│\s*serving\s*│\s*{pid}\s*│", run.Stdout);
        }
        Assert.Contains($"graft up (pid {stack.Up.Id})", run.Stdout, StringComparison.Ordinal);
        Assert.Contains($"{SupervisedStackFixture.Head} v1", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("backbone: ", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    [Step(Order = 3)]
    public async Task The_log_directory_stays_under_its_bound_under_load_and_logs_are_json_lines()
    {
        // Every call logs a Debug line in this stack: load until every service's log has rolled over at least once.
        var rolled = new[] { "backbone", "heads", "gateway" }.Select(n => Path.Combine(stack.LogDirectory, n + ".log.1")).ToList();
        using (var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3)))
        {
            while (!rolled.All(File.Exists))
                await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => stack.PredictOnceAsync(limit.Token)));
        }
        await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => stack.PredictOnceAsync(CancellationToken.None)));

        var files = Directory.GetFiles(stack.LogDirectory);
        var total = files.Sum(f => new FileInfo(f).Length);
        var longestLine = files.SelectMany(File.ReadLines).Max(l => l.Length + 1);
        output.WriteLine($"logs: {total} bytes in {files.Length} files (bound {SupervisedStackFixture.LogMaxBytes}, longest line {longestLine})");
        // A file rolls after the line that crossed its limit: at most one line over per file.
        Assert.True(total <= SupervisedStackFixture.LogMaxBytes + files.Length * longestLine, $"{total} bytes of logs: {string.Join(", ", files.Select(f => $"{Path.GetFileName(f)} {new FileInfo(f).Length}"))}");
        // Every service rolled once (waited for above); a current file may be absent for an instant right after its roll.
        var expected = new[] { "backbone", "heads", "gateway" }.SelectMany(n => new[] { n + ".log", n + ".log.1" }).ToHashSet();
        Assert.All(files, f => Assert.Contains(Path.GetFileName(f), expected));
        Assert.All(rolled, f => Assert.Contains(f, files));

        // Logging__Console__FormatterName=json: each line a JSON object with the event's level and category.
        var gatewayLog = Path.Combine(stack.LogDirectory, "gateway.log");
        var line = File.ReadLines(File.Exists(gatewayLog) ? gatewayLog : gatewayLog + ".1").First(l => l.StartsWith('{'));
        using var json = JsonDocument.Parse(line);
        Assert.True(json.RootElement.TryGetProperty("LogLevel", out _), line);
        Assert.True(json.RootElement.TryGetProperty("Category", out _), line);
    }

    [Fact]
    [Step(Order = 4)]
    public async Task Sigterm_stops_graft_up_and_every_service_within_the_stop_timeout()
    {
        var pids = new[] { "Backbone", "Heads", "Gateway" }.Select(n => (int)stack.Service(n)["pid"]!).ToList();
        var watch = Stopwatch.StartNew();

        _ = SupervisedStackFixture.SysKill(stack.Up.Id, 15);
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await stack.Up.WaitForExitAsync(limit.Token);

        output.WriteLine($"graft up stopped {watch.Elapsed.TotalSeconds:0.0} s after SIGTERM");
        Assert.Equal(0, stack.Up.ExitCode);
        foreach (var pid in pids) Assert.False(IsRunning(pid), $"service pid {pid} still runs after graft up exited");
        Assert.False(File.Exists(Path.Combine(stack.DataDirectory, "stack.json")));
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
