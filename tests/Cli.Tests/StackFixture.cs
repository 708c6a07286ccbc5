using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Graft.Cli.Tests;

/// <summary>One local stack for the whole collection, started the way a user starts it: <c>graft up</c> on free ports,
/// in a scratch folder (its data/ holds the registry, the logs and the admin token the other commands read).</summary>
public sealed partial class StackFixture : IAsyncLifetime
{
    private readonly StringBuilder _upOutput = new();
    private Process? _up;
    private readonly Lazy<Task<CliRun>> _classifier;

    public StackFixture()
    {
        WorkingDirectory = Directory.CreateTempSubdirectory("graft-cli-tests-").FullName;
        BasePort = GraftCli.FreeBasePort();
        _classifier = new Lazy<Task<CliRun>>(TrainClassifierAsync);
    }

    public string WorkingDirectory { get; }

    public int BasePort { get; }

    public string Gateway => $"http://127.0.0.1:{BasePort}";

    /// <summary>Head trained once by <see cref="ClassifierTraining"/> and shared by the tests that need a head.</summary>
    public const string ClassifierHead = "cli-category";

    /// <summary>Three classes, eight images each: enough for a real head, small enough for a shared 2-core host.</summary>
    public string ClassifierData => Path.Combine(WorkingDirectory, "classes");

    /// <summary>The one `graft train` run of <see cref="ClassifierHead"/> (started by the first test that asks).</summary>
    public Task<CliRun> ClassifierTraining => _classifier.Value;

    /// <summary>Runs <c>graft --gateway &lt;this stack&gt; args</c> in the stack's folder.</summary>
    public Task<CliRun> Graft(params string[] args) => GraftCli.RunAsync(WorkingDirectory, ["--gateway", Gateway, .. args]);

    public async Task InitializeAsync()
    {
        foreach (var label in new[] { "trouser", "sneaker", "bag" })
        {
            var target = Directory.CreateDirectory(Path.Combine(ClassifierData, label)).FullName;
            foreach (var file in Directory.GetFiles(Path.Combine(GraftCli.Samples, "train", label), "*.png").Order(StringComparer.Ordinal).Take(8))
                File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        }

        _up = GraftCli.Start(WorkingDirectory, ["up", "--base-port", BasePort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--timeout", "900"]);
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _up.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_upOutput) _upOutput.AppendLine(e.Data);
            if (e.Data.Contains("Graft stack ready", StringComparison.Ordinal)) ready.TrySetResult();
        };
        _up.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (_upOutput) _upOutput.AppendLine(e.Data);
        };
        _up.BeginOutputReadLine();
        _up.BeginErrorReadLine();

        // Generous: three services warm up on a CPU shared with other test projects.
        var finished = await Task.WhenAny(ready.Task, _up.WaitForExitAsync(), Task.Delay(TimeSpan.FromMinutes(15)));
        if (finished != ready.Task)
        {
            string output;
            lock (_upOutput) output = _upOutput.ToString();
            throw new InvalidOperationException($"`graft up` did not report a ready stack (exited: {_up.HasExited}).\n{output}");
        }
    }

    public async Task DisposeAsync()
    {
        if (_up is null) return;
        if (!_up.HasExited)
        {
            // SIGTERM, as a service manager would send: `up` stops the three services and exits. (Not SIGINT: a shell
            // that starts the test run in the background makes its children ignore SIGINT, and that is inherited.)
            _ = SysKill(_up.Id, 15);
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            try
            {
                await _up.WaitForExitAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                _up.Kill(entireProcessTree: true);
            }
        }
        _up.Dispose();
        try
        {
            Directory.Delete(WorkingDirectory, recursive: true);
        }
        catch (IOException)
        {
            // A service may still hold a log file open for a moment; the OS cleans temp.
        }
    }

    private Task<CliRun> TrainClassifierAsync() =>
        Graft("train", ClassifierHead, "--kind", "classifier", "--data", ClassifierData, "--epochs", "8", "--val", "0.25", "--seed", "7");

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int SysKill(int pid, int signal);
}

[CollectionDefinition(Name)]
public sealed class StackCollection : ICollectionFixture<StackFixture>
{
    public const string Name = "graft up stack";
}
