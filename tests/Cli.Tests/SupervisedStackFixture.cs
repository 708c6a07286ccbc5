using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Graft.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace Graft.Cli.Tests;

/// <summary>A `graft up` stack of its own (the supervision tests kill its services): small log bound, per-call
/// Debug lines on (so load fills the logs fast) and JSON console output, with one trained head.</summary>
public sealed partial class SupervisedStackFixture : IAsyncLifetime
{
    /// <summary>The smallest bound `graft up` accepts: load rolls every service's log within seconds.</summary>
    public const long LogMaxBytes = 65536;

    public const string Head = "sup-category";

    private readonly StringBuilder _upOutput = new();
    private GrpcChannel? _channel;

    public SupervisedStackFixture()
    {
        WorkingDirectory = Directory.CreateTempSubdirectory("graft-supervise-tests-").FullName;
        BasePort = GraftCli.FreeBasePort();
    }

    public string WorkingDirectory { get; }

    public int BasePort { get; }

    public string DataDirectory => Path.Combine(WorkingDirectory, "data");

    public string LogDirectory => Path.Combine(DataDirectory, "logs");

    public Process Up { get; private set; } = null!;

    public string UpOutput
    {
        get { lock (_upOutput) return _upOutput.ToString(); }
    }

    public Gateway.GatewayClient Client { get; private set; } = null!;

    public byte[] Image { get; } = File.ReadAllBytes(Directory.GetFiles(Path.Combine(GraftCli.Samples, "test", "bag"), "*.png").Order(StringComparer.Ordinal).First());

    public Task<CliRun> Graft(params string[] args) => GraftCli.RunAsync(WorkingDirectory, ["--gateway", $"http://127.0.0.1:{BasePort}", .. args]);

    public async Task InitializeAsync()
    {
        var classes = Path.Combine(WorkingDirectory, "classes");
        foreach (var label in new[] { "trouser", "sneaker", "bag" })
        {
            var target = Directory.CreateDirectory(Path.Combine(classes, label)).FullName;
            foreach (var file in Directory.GetFiles(Path.Combine(GraftCli.Samples, "train", label), "*.png").Order(StringComparer.Ordinal).Take(6))
                File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        }

        Up = GraftCli.Start(WorkingDirectory,
            ["up", "--base-port", BasePort.ToString(CultureInfo.InvariantCulture), "--timeout", "900", "--log-max-bytes", LogMaxBytes.ToString(CultureInfo.InvariantCulture)],
            new Dictionary<string, string>
            {
                ["Logging__Console__FormatterName"] = "json",
                ["Logging__LogLevel__Graft.ServiceDefaults"] = "Debug",
            });
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Up.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_upOutput) _upOutput.AppendLine(e.Data);
            if (e.Data.Contains("Graft stack ready", StringComparison.Ordinal)) ready.TrySetResult();
        };
        Up.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (_upOutput) _upOutput.AppendLine(e.Data);
        };
        Up.BeginOutputReadLine();
        Up.BeginErrorReadLine();
        if (await Task.WhenAny(ready.Task, Up.WaitForExitAsync(), Task.Delay(TimeSpan.FromMinutes(15))) != ready.Task)
            throw new InvalidOperationException($"`graft up` did not report a ready stack (exited: {Up.HasExited}).\n{UpOutput}");

        _channel = GrpcChannel.ForAddress($"http://127.0.0.1:{BasePort}", new GrpcChannelOptions
        {
            // Reconnect at once when the Gateway is back, so the time measured is the stack's, not the client's backoff.
            InitialReconnectBackoff = TimeSpan.FromMilliseconds(100),
            MaxReconnectBackoff = TimeSpan.FromMilliseconds(500),
        });
        Client = new Gateway.GatewayClient(_channel);

        var train = await Graft("train", Head, "--kind", "classifier", "--data", classes, "--epochs", "5", "--val", "0.25", "--seed", "7");
        if (train.ExitCode != 0) throw new InvalidOperationException($"training the test head failed: {train}");
    }

    /// <summary>One Predict of the sample image; true when it answered with the test head's prediction.</summary>
    public async Task<bool> PredictOnceAsync(CancellationToken ct)
    {
        try
        {
            var reply = await Client.PredictAsync(new PredictRequest { Image = ByteString.CopyFrom(Image) }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            return reply.Results.Any(r => r.Head == Head);
        }
        catch (RpcException)
        {
            return false;
        }
    }

    /// <summary>What `graft up` publishes in data/stack.json.</summary>
    public JsonObject State() => JsonNode.Parse(File.ReadAllText(Path.Combine(DataDirectory, "stack.json")))!.AsObject();

    public JsonObject Service(string name) => State()["services"]!.AsArray().Select(s => s!.AsObject()).Single(s => (string)s["name"]! == name);

    public async Task DisposeAsync()
    {
        _channel?.Dispose();
        if (Up is not null && !Up.HasExited)
        {
            _ = SysKill(Up.Id, 15);
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            try
            {
                await Up.WaitForExitAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                Up.Kill(entireProcessTree: true);
            }
        }
        Up?.Dispose();
        try
        {
            Directory.Delete(WorkingDirectory, recursive: true);
        }
        catch (IOException)
        {
            // A service may still hold a log file open for a moment; the OS cleans temp.
        }
    }

    [LibraryImport("libc", EntryPoint = "kill")]
    internal static partial int SysKill(int pid, int signal);
}
