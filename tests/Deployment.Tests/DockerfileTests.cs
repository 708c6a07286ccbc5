using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Graft.Deployment.Tests;

/// <summary>Each service's Dockerfile checked against the real project layout (there is no Docker engine here).</summary>
public sealed class DockerfileTests
{
    public static TheoryData<string> ServiceFolders => new(Repo.Services.Select(s => s.Folder));

    private static ServiceInfo Service(string folder) => Repo.Services.Single(s => s.Folder == folder);

    [Theory]
    [MemberData(nameof(ServiceFolders))]
    public void Every_copy_from_the_build_context_names_a_path_that_exists_and_is_not_dockerignored(string folder)
    {
        var dockerfile = Dockerfile.Load(Service(folder).DockerfilePath);
        var ignore = new DockerIgnore(Repo.PathOf(".dockerignore"));
        var sources = ContextCopySources(dockerfile).ToList();

        Assert.NotEmpty(sources);
        Assert.All(sources, source =>
        {
            Assert.True(File.Exists(Repo.PathOf(source)) || Directory.Exists(Repo.PathOf(source)), $"{folder}/Dockerfile copies {source}, which does not exist.");
            Assert.False(ignore.Excludes(source), $"{folder}/Dockerfile copies {source}, but .dockerignore leaves it out of the build context.");
        });
        Assert.True(ignore.Excludes($"services/{folder}/bin/Debug/x.dll") && ignore.Excludes($"services/{folder}/obj/project.assets.json"),
            "Host build output must stay out of the build context (it would break the container's restore).");
    }

    [Theory]
    [MemberData(nameof(ServiceFolders))]
    public void Build_stage_copies_every_project_the_service_depends_on_and_the_shared_build_files(string folder)
    {
        var service = Service(folder);
        var sources = ContextCopySources(Dockerfile.Load(service.DockerfilePath)).Select(s => s.TrimEnd('/')).ToList();

        foreach (var project in ProjectClosure(service.ProjectPath))
        {
            var relative = Path.GetRelativePath(Repo.Root, project).Replace('\\', '/');
            var projectDir = Path.GetDirectoryName(relative)!.Replace('\\', '/');
            Assert.True(sources.Contains(relative), $"{folder}/Dockerfile does not copy {relative} before restore.");
            Assert.True(sources.Contains(projectDir), $"{folder}/Dockerfile does not copy the sources of {projectDir}.");
        }

        foreach (var shared in new[] { "global.json", "Directory.Build.props", "Directory.Packages.props", "Directory.Build.targets" }.Where(f => File.Exists(Repo.PathOf(f))))
        {
            Assert.Contains(shared, sources);
        }
    }

    [Theory]
    [MemberData(nameof(ServiceFolders))]
    public void Images_publish_the_service_project_and_run_its_assembly(string folder)
    {
        var service = Service(folder);
        var dockerfile = Dockerfile.Load(service.DockerfilePath);
        var expectedProject = Path.GetRelativePath(Repo.Root, service.ProjectPath).Replace('\\', '/');

        var publish = dockerfile.Stages.SelectMany(s => s.All("RUN")).Select(r => Dockerfile.Words(r.Arguments))
            .Single(w => w.Count > 2 && w[0] == "dotnet" && w[1] == "publish");
        Assert.Equal(expectedProject, publish[2]);
        Assert.True(File.Exists(Repo.PathOf(publish[2])));
        Assert.Contains("--no-self-contained", publish);
        Assert.Equal("Release", publish[publish.IndexOf("-c") + 1]);
        Assert.Equal("linux-x64", publish[publish.IndexOf("-r") + 1]);

        var runtimes = RuntimeStages(dockerfile).ToList();
        Assert.NotEmpty(runtimes);
        Assert.Contains(dockerfile.Default, runtimes);
        Assert.All(runtimes, stage => Assert.Equal(["dotnet", service.AssemblyName + ".dll"], stage.Last("ENTRYPOINT")!.ExecForm()));
    }

    [Theory]
    [MemberData(nameof(ServiceFolders))]
    public void Images_build_on_the_dotnet_sdk_and_run_as_a_non_root_user_on_the_service_ports(string folder)
    {
        var service = Service(folder);
        var dockerfile = Dockerfile.Load(service.DockerfilePath);

        Assert.Matches(@"^mcr\.microsoft\.com/dotnet/sdk:10\.0", dockerfile.Stages[0].Image);
        Assert.Matches(@"^mcr\.microsoft\.com/dotnet/aspnet:10\.0", dockerfile.Default.Image);
        foreach (var stage in RuntimeStages(dockerfile))
        {
            var user = stage.Last("USER")?.Arguments;
            Assert.True(user is not null && user != "root" && user != "0" && !user.StartsWith("0:", StringComparison.Ordinal),
                $"{folder}: runtime stage {stage.Name} must switch to a non-root user (got {user ?? "none"}).");
            Assert.Equal("1654", user); // The aspnet images' "app" user; the manifests' runAsUser.

            var exposed = stage.All("EXPOSE").SelectMany(e => Dockerfile.Words(e.Arguments)).Select(int.Parse).Order();
            Assert.Equal(new[] { service.DefaultPort("Grpc"), service.DefaultPort("Http") }.Order(), exposed);

            var env = stage.All("ENV").SelectMany(e => e.Env()).ToDictionary(kv => kv.Key, kv => kv.Value);
            foreach (var endpoint in new[] { "Grpc", "Http" })
            {
                Assert.Equal($"http://0.0.0.0:{service.DefaultPort(endpoint)}", env[$"Kestrel__Endpoints__{endpoint}__Url"]);
            }
        }
    }

    [Fact]
    public void Backbone_gpu_image_carries_the_cuda_major_version_the_onnx_runtime_cuda_provider_links()
    {
        var dockerfile = Dockerfile.Load(Repo.ByComponent("backbone").DockerfilePath);
        var gpu = dockerfile["gpu"];
        var provider = Path.Combine(AppContext.BaseDirectory, "libonnxruntime_providers_cuda.so");
        Assert.True(File.Exists(provider), $"{provider} is missing: the BackboneService build output should carry ONNX Runtime's CUDA provider.");

        var needed = ElfNeeded.Read(provider);
        var cudart = needed.Select(n => Regex.Match(n, @"^libcudart\.so\.(\d+)$")).Single(m => m.Success).Groups[1].Value;

        var tag = Regex.Match(gpu.Image, @"^nvidia/cuda:(\d+)\.\d+(\.\d+)?-cudnn-runtime-ubuntu24\.04$");
        Assert.True(tag.Success, $"The gpu stage should start from an nvidia/cuda <version>-cudnn-runtime-ubuntu24.04 image, not {gpu.Image}.");
        Assert.Equal(cudart, tag.Groups[1].Value);
        // The ASP.NET Core runtime comes from Microsoft's image of the same Ubuntu release.
        Assert.Contains(gpu.All("COPY"), c => c.Copy().Flags.GetValueOrDefault("from") == "aspnet" && c.Copy().Sources.SequenceEqual(["/usr/share/dotnet"]));
        Assert.Matches(@"^mcr\.microsoft\.com/dotnet/aspnet:10\.0-noble$", dockerfile["aspnet"].Image);
    }

    /// <summary>COPY sources taken from the build context (not --from another stage or image).</summary>
    private static IEnumerable<string> ContextCopySources(Dockerfile dockerfile) =>
        dockerfile.Stages.SelectMany(s => s.All("COPY").Concat(s.All("ADD")))
            .Select(i => i.Copy())
            .Where(c => !c.Flags.ContainsKey("from"))
            .SelectMany(c => c.Sources);

    /// <summary>Stages that receive the published app from the build stage.</summary>
    private static IEnumerable<Dockerfile.Stage> RuntimeStages(Dockerfile dockerfile) =>
        dockerfile.Stages.Where(s => s.All("COPY").Any(c => c.Copy().Flags.GetValueOrDefault("from") == dockerfile.Stages[0].Name));

    /// <summary>The project and every project it references, transitively.</summary>
    private static IEnumerable<string> ProjectClosure(string project)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([Path.GetFullPath(project)]);
        while (pending.TryPop(out var current))
        {
            if (!seen.Add(current))
            {
                continue;
            }

            foreach (var reference in XDocument.Load(current).Descendants("ProjectReference").Select(e => e.Attribute("Include")?.Value).OfType<string>())
            {
                pending.Push(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(current)!, reference.Replace('\\', '/'))));
            }
        }

        return seen;
    }
}
