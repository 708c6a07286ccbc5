using System.Reflection;
using Graft.Launcher;

namespace Graft.Testing;

/// <summary>Where the repository and the built services are, as recorded when this harness was built.</summary>
public static class RepositoryLayout
{
    private static readonly Assembly Self = typeof(RepositoryLayout).Assembly;

    /// <summary>Build configuration of the harness (and so of the services it built), e.g. "Debug".</summary>
    public static string Configuration => Metadata("Graft.Configuration") ?? "Debug";

    public static string RuntimeIdentifier => Metadata("Graft.RuntimeIdentifier") is { Length: > 0 } rid ? rid : "linux-x64";

    /// <summary>The repository root: the recorded one when it still exists, else the nearest folder above holding Services.sln.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The committed sample images (<c>samples/fashion</c>).</summary>
    public static string FashionSamples => Path.Combine(Root, "samples", "fashion");

    /// <summary>The built DLL of a service, e.g. <c>services/Gateway/bin/Debug/net10.0/linux-x64/Graft.Gateway.dll</c>.</summary>
    public static string ServiceDll(GraftService service)
    {
        var path = service.BuiltDll(Root, Configuration, RuntimeIdentifier);
        return File.Exists(path)
            ? path
            : throw new FileNotFoundException($"{service.AssemblyName()}.dll is not built at {path}; build the test project (it builds the services) with -c {Configuration}.", path);
    }

    private static string? Metadata(string key) =>
        Self.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == key)?.Value;

    private static string FindRoot()
    {
        if (Metadata("Graft.RepositoryRoot") is { } recorded && File.Exists(Path.Combine(recorded, "Services.sln")))
        {
            return Path.GetFullPath(recorded);
        }
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Services.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("Cannot find the repository root (a folder holding Services.sln) above " + AppContext.BaseDirectory);
    }
}
