using System.Reflection;
using System.Runtime.InteropServices;

namespace Graft.Cli.Stack;

/// <summary>Finds the built service DLLs and the <c>dotnet</c> host that runs them.</summary>
public static class ServiceLocator
{
    /// <summary>Path of a service's DLL (e.g. "Graft.Gateway"): in a published folder (<c>deploy/publish.sh</c>) the
    /// sibling <c>../services/&lt;folder&gt;/</c>; else the path recorded at build time, else a search upwards from the
    /// CLI for <c>services/&lt;folder&gt;/bin/&lt;configuration&gt;/net10.0/linux-x64</c>.</summary>
    public static string FindServiceDll(string assemblyName, string folder)
    {
        var published = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "services", folder, assemblyName + ".dll"));
        if (File.Exists(published)) return published;

        var recorded = typeof(ServiceLocator).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "GraftService:" + assemblyName)?.Value;
        if (recorded is not null && File.Exists(recorded)) return recorded;

        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var bin = Path.Combine(dir.FullName, "services", folder, "bin");
            if (!Directory.Exists(bin)) continue;
            var candidate = Directory.EnumerateFiles(bin, assemblyName + ".dll", SearchOption.AllDirectories)
                .Where(p => !p.Contains($"{Path.DirectorySeparatorChar}publish{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
                .OrderByDescending(File.GetLastWriteTimeUtc).FirstOrDefault();
            if (candidate is not null) return candidate;
        }
        throw new CliException(
            $"{assemblyName}.dll was not found{(recorded is null ? "" : $" at {recorded}")}: build the CLI, which builds the services too " +
            "(`dotnet build tools/Graft.Cli -c Release`), or use `dotnet run --project tools/Graft.Cli -c Release -- up`.",
            ExitCodes.Unreachable);
    }

    /// <summary>The service's own executable when it was published self-contained (a runtime beside it, no
    /// <c>dotnet</c> needed), else null: run it with <see cref="DotnetHost"/>.</summary>
    public static string? SelfContainedExecutable(string dll)
    {
        var folder = Path.GetDirectoryName(dll)!;
        var executable = Path.Combine(folder, Path.GetFileNameWithoutExtension(dll));
        return File.Exists(Path.Combine(folder, "libhostpolicy.so")) && File.Exists(executable) ? executable : null;
    }

    /// <summary>The <c>dotnet</c> executable: this process when it is dotnet, else the one that runs this runtime.</summary>
    public static string DotnetHost()
    {
        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } hostPath && File.Exists(hostPath)) return hostPath;
        // <root>/shared/Microsoft.NETCore.App/<version>/ -> <root>/dotnet
        var root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        var candidate = Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        return File.Exists(candidate) ? candidate : "dotnet";
    }
}
