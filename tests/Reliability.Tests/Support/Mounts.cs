using System.Diagnostics;

namespace Graft.Reliability.Tests.Support;

/// <summary>Small filesystem faults for a registry folder: a tiny tmpfs (disk full) that can be remounted read-only.
/// Needs root (CI and the dev machines run as root); <see cref="TryMountTmpfs"/> says when the machine refuses.</summary>
public static class Mounts
{
    public static bool TryMountTmpfs(string directory, string size, out string error) =>
        Run(out error, "mount", "-t", "tmpfs", "-o", $"size={size},mode=0755", "tmpfs", directory);

    public static void RemountReadOnly(string directory)
    {
        if (!Run(out var error, "mount", "-o", "remount,ro", directory))
        {
            throw new InvalidOperationException($"remounting {directory} read-only failed: {error}");
        }
    }

    public static void Unmount(string directory) => Run(out _, "umount", "-l", directory);

    private static bool Run(out string error, string file, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in args)
            {
                psi.ArgumentList.Add(a);
            }
            using var p = Process.Start(psi)!;
            error = p.StandardError.ReadToEnd();
            p.WaitForExit(30_000);
            return p.HasExited && p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            error = e.Message;
            return false;
        }
    }
}
