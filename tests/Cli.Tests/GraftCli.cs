using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text;

namespace Graft.Cli.Tests;

/// <summary>What one run of the CLI did.</summary>
public sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>Runs the real, built <c>graft</c> binary (<c>dotnet graft.dll ...</c>) as a separate process.</summary>
public static class GraftCli
{
    private static readonly Assembly Self = typeof(GraftCli).Assembly;

    public static string Dll { get; } = Metadata("Graft.CliDll") is { } dll && File.Exists(dll)
        ? dll
        : throw new FileNotFoundException($"graft.dll is not built at {Metadata("Graft.CliDll")}; build tests/Cli.Tests (it builds the CLI).");

    public static string RepositoryRoot { get; } = Metadata("Graft.RepositoryRoot")!;

    public static string Samples => Path.Combine(RepositoryRoot, "samples", "fashion");

    /// <summary>Starts <c>graft args</c> in <paramref name="workingDirectory"/> with a clean Graft environment
    /// (no GRAFT_* variables from the caller leak in).</summary>
    public static Process Start(string workingDirectory, IEnumerable<string> args, IDictionary<string, string>? env = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        info.ArgumentList.Add(Dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var key in new[] { "GRAFT_GATEWAY", "GRAFT_ADMIN_TOKEN", "GRAFT_TOKEN_FILE" }) info.Environment.Remove(key);
        foreach (var (key, value) in env ?? new Dictionary<string, string>()) info.Environment[key] = value;
        return Process.Start(info) ?? throw new InvalidOperationException("Could not start dotnet.");
    }

    /// <summary>Runs <c>graft args</c> to completion. The timeout is generous (a shared 2-core host); it guards against hangs only.</summary>
    public static async Task<CliRun> RunAsync(string workingDirectory, params string[] args)
    {
        using var process = Start(workingDirectory, args);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"graft {string.Join(' ', args)} did not finish in 10 minutes.\n{await stdout}\n{await stderr}");
        }
        return new CliRun(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>A base port B such that B, B+1, B+10, B+11, B+20, B+21 are free on loopback right now.</summary>
    public static int FreeBasePort()
    {
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var basePort = Random.Shared.Next(20_000, 45_000);
            if (new[] { 0, 1, 10, 11, 20, 21 }.All(offset => IsFree(basePort + offset))) return basePort;
        }
        throw new InvalidOperationException("No free block of loopback ports found.");
    }

    /// <summary>A loopback port nothing listens on.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static string? Metadata(string key) =>
        Self.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == key)?.Value;
}
