using System.Reflection;

namespace Graft.Cli.Stack;

/// <summary>Finds the built service DLLs and the <c>dotnet</c> host that runs them.</summary>
public static class ServiceLocator
{
    /// <summary>Path of a service's DLL (e.g. "Graft.Gateway"): the path recorded at build time, else a search
    /// upwards from the CLI for <c>services/&lt;folder&gt;/bin/&lt;configuration&gt;/net10.0/linux-x64</c>.</summary>
    public static string FindServiceDll(string assemblyName, string folder)
    {
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
}
