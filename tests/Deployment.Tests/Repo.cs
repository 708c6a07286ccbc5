using System.Text.Json;
using System.Xml.Linq;

namespace Graft.Deployment.Tests;

/// <summary>Paths and facts read from the real repository layout (the tests run from the build output).</summary>
public static class Repo
{
    /// <summary>The three deployable services: folder under services/, Kubernetes component name, project file.</summary>
    public static readonly IReadOnlyList<ServiceInfo> Services =
    [
        new("BackboneService", "backbone", "BackboneService.csproj"),
        new("HeadService", "heads", "HeadService.csproj"),
        new("Gateway", "gateway", "Gateway.csproj"),
    ];

    public static string Root { get; } = FindRoot();

    public static string PathOf(string relative) => Path.Combine(Root, relative.Replace('/', Path.DirectorySeparatorChar));

    public static ServiceInfo ByComponent(string component) => Services.Single(s => s.Component == component);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Services.sln")) && Directory.Exists(Path.Combine(dir.FullName, "k8s")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No repository root (a folder with Services.sln and k8s/) above {AppContext.BaseDirectory}.");
    }
}

/// <summary>One service as laid out in the repository.</summary>
public sealed record ServiceInfo(string Folder, string Component, string ProjectFile)
{
    public string ProjectPath => Repo.PathOf($"services/{Folder}/{ProjectFile}");

    public string DockerfilePath => Repo.PathOf($"services/{Folder}/Dockerfile");

    /// <summary>The AssemblyName the project file declares (the SDK default is the project file's name).</summary>
    public string AssemblyName =>
        XDocument.Load(ProjectPath).Descendants("AssemblyName").Select(e => e.Value.Trim()).LastOrDefault()
        ?? Path.GetFileNameWithoutExtension(ProjectFile);

    /// <summary>The port of a Kestrel endpoint ("Grpc" or "Http") in the service's appsettings.json: what it listens on by default.</summary>
    public int DefaultPort(string endpoint) => new Uri(DefaultEndpoints()[endpoint]).Port;

    /// <summary>Kestrel endpoint names and URLs from appsettings.json.</summary>
    public IReadOnlyDictionary<string, string> DefaultEndpoints()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Repo.PathOf($"services/{Folder}/appsettings.json")),
            new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        return doc.RootElement.GetProperty("Kestrel").GetProperty("Endpoints").EnumerateObject()
            .ToDictionary(e => e.Name, e => e.Value.GetProperty("Url").GetString()!, StringComparer.OrdinalIgnoreCase);
    }

    public override string ToString() => Folder;
}
