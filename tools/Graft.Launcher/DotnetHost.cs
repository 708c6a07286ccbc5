using System.Runtime.InteropServices;

namespace Graft.Launcher;

/// <summary>The <c>dotnet</c> executable that runs the service DLLs.</summary>
public static class DotnetHost
{
    /// <summary>This process when it is dotnet, else <c>DOTNET_HOST_PATH</c>, else the one that runs this runtime.</summary>
    public static string Path { get; } = Find();

    private static string Find()
    {
        if (Environment.ProcessPath is { } self && System.IO.Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } hostPath && File.Exists(hostPath)) return hostPath;
        // <root>/shared/Microsoft.NETCore.App/<version>/ -> <root>/dotnet
        var root = System.IO.Path.GetFullPath(System.IO.Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        var candidate = System.IO.Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        return File.Exists(candidate) ? candidate : "dotnet";
    }
}
