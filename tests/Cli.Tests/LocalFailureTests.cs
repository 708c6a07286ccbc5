using System.Net;
using System.Net.Sockets;

namespace Graft.Cli.Tests;

/// <summary>Failures the CLI must explain without any stack running: each names the problem and what to do, with its exit code.</summary>
public sealed class LocalFailureTests
{
    private static readonly string Here = Path.GetTempPath();

    [Theory]
    [InlineData("heads", "list")]
    [InlineData("backbone", "describe")]
    [InlineData("train", "x", "--kind", "regressor", "--data", "{samples}/train/lengths.csv")]
    [InlineData("predict", "{samples}/test/bag")]
    public async Task A_gateway_that_is_not_reachable_gives_advice_and_exit_code_3(params string[] verb)
    {
        var port = GraftCli.FreePort();
        var args = verb.Select(a => a.Replace("{samples}", GraftCli.Samples, StringComparison.Ordinal)).ToArray();

        var run = await GraftCli.RunAsync(Here, ["--gateway", $"http://127.0.0.1:{port}", .. args]);

        Assert.True(run.ExitCode == 3, run.ToString());
        Assert.Contains($"Gateway not reachable at http://127.0.0.1:{port}: run `graft up`", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Up_on_a_port_in_use_names_the_port_and_exits_with_code_3()
    {
        using var holder = new TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        var port = ((IPEndPoint)holder.LocalEndpoint).Port;

        var run = await GraftCli.RunAsync(Here, "up", "--base-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--data-dir", Path.Combine(Here, "graft-unused"));

        Assert.True(run.ExitCode == 3, run.ToString());
        Assert.Contains($"Port {port} (Gateway gRPC) is already in use", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("--base-port", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Train_on_a_folder_without_class_subfolders_is_a_usage_error_with_exit_code_2()
    {
        var run = await GraftCli.RunAsync(Here, "train", "x", "--kind", "classifier", "--data", Path.Combine(GraftCli.Samples, "train", "bag"));

        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("a classifier needs at least two", run.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--depth", "deep", "--depth 'deep' is not a depth: use probe, mlp, last-block, last-stage or auto.")]
    [InlineData("--augment", "17", "--augment must be between 0 and 16 augmented views per image (got 17).")]
    [InlineData("--augment", "-1", "--augment must be between 0 and 16 augmented views per image (got -1).")]
    public async Task Train_with_a_bad_depth_or_augment_is_refused_before_any_call_naming_the_option(string option, string value, string message)
    {
        var port = GraftCli.FreePort(); // nothing listens: the refusal must come before any call

        var run = await GraftCli.RunAsync(Here, "--gateway", $"http://127.0.0.1:{port}", "train", "x", "--data", Path.Combine(GraftCli.Samples, "train"), option, value);

        Assert.True(run.ExitCode != 0, run.ToString()); // System.CommandLine's parse-error code (1), as for --kind
        Assert.Contains(message, run.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("not reachable", run.Stderr, StringComparison.Ordinal);
    }
}
