using System.Runtime.InteropServices;

namespace Graft.ServiceDefaults;

/// <summary>Crash-safe file primitives: data reaches the disk before a rename makes it visible.</summary>
public static partial class Durable
{
    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;

    /// <summary>Creates <paramref name="path"/> (it must not exist), writes and fsyncs it.</summary>
    public static void WriteNewFile(string path, ReadOnlySpan<byte> bytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>fsyncs a directory so a rename or new entry in it survives a power cut. .NET cannot open
    /// directories as files, hence libc.</summary>
    public static void FsyncDirectory(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        int fd = Open(path, ORdOnly | ODirectory);
        if (fd < 0)
        {
            throw new IOException($"Cannot open directory {path} to fsync it (errno {Marshal.GetLastPInvokeError()}).");
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory {path} failed (errno {Marshal.GetLastPInvokeError()}).");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
