namespace Graft.Launcher;

/// <summary>The three Graft services.</summary>
public enum GraftService
{
    Backbone,
    Heads,
    Gateway,
}

/// <summary>Where each service's project and assembly are named.</summary>
public static class GraftServices
{
    public static IReadOnlyList<GraftService> All { get; } = [GraftService.Backbone, GraftService.Heads, GraftService.Gateway];

    /// <summary>The project folder under <c>services/</c>, e.g. "BackboneService".</summary>
    public static string Folder(this GraftService service) => service switch
    {
        GraftService.Backbone => "BackboneService",
        GraftService.Heads => "HeadService",
        _ => "Gateway",
    };

    /// <summary>The assembly name, e.g. "Graft.BackboneService".</summary>
    public static string AssemblyName(this GraftService service) => "Graft." + service.Folder();

    /// <summary>A built service DLL under a repository: <c>services/&lt;X&gt;/bin/&lt;configuration&gt;/net10.0/&lt;rid&gt;/Graft.&lt;X&gt;.dll</c>.</summary>
    public static string BuiltDll(this GraftService service, string repositoryRoot, string configuration, string runtimeIdentifier = "linux-x64")
        => Path.Combine(repositoryRoot, "services", service.Folder(), "bin", configuration, "net10.0", runtimeIdentifier, service.AssemblyName() + ".dll");
}
