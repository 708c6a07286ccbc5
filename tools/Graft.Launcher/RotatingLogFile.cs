namespace Graft.Launcher;

/// <summary>A service's captured stdout/stderr: <c>name.log</c>, rolled over to <c>name.log.1</c> when it reaches
/// half the service's budget, so the two files together never hold much more than <paramref name="maxBytes"/>.
/// Hand-written rather than a logging library's file sink: what is written here is another process's raw output
/// lines, not log events of this process, and the whole policy is one rename.</summary>
public sealed class RotatingLogFile : IDisposable
{
    private readonly object _gate = new();
    private readonly long _fileLimit;
    private FileStream? _stream;
    private StreamWriter? _writer;

    /// <param name="path">The current file; the previous one is <c>path + ".1"</c>.</param>
    /// <param name="maxBytes">Bound for both files together.</param>
    public RotatingLogFile(string path, long maxBytes)
    {
        Path = path;
        _fileLimit = Math.Max(1024, maxBytes / 2);
        // A new `graft up` keeps the previous run's output as .1 rather than truncating it.
        if (File.Exists(path) && new FileInfo(path).Length > 0) Roll();
        Open();
    }

    public string Path { get; }

    public string PreviousPath => Path + ".1";

    /// <summary>Appends one line; safe from several threads (stdout and stderr readers, the supervisor).</summary>
    public void WriteLine(string line)
    {
        lock (_gate)
        {
            if (_writer is null) return;
            _writer.WriteLine(line);
            if (_stream!.Length >= _fileLimit)
            {
                Close();
                Roll();
                Open();
            }
        }
    }

    /// <summary>The last lines written, without stack-frame lines (from the previous file too when the current one is short).</summary>
    public static string Tail(string path, int lines = 15)
    {
        var all = new List<string>();
        foreach (var file in new[] { path + ".1", path })
        {
            try
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var reader = new StreamReader(stream);
                all.AddRange(reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries));
            }
            catch (IOException)
            {
                // Not there (yet).
            }
        }
        // Stack frames push the exception's own message out of view and tell an operator nothing.
        var useful = all.Where(l => !l.StartsWith("   at ", StringComparison.Ordinal) && !l.StartsWith("--- End of", StringComparison.Ordinal)).ToList();
        return useful.Count == 0 ? "(no log)" : string.Join('\n', useful.TakeLast(lines));
    }

    public void Dispose()
    {
        lock (_gate)
        {
            Close();
        }
    }

    private void Open()
    {
        _stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        _writer = new StreamWriter(_stream) { AutoFlush = true };
    }

    private void Close()
    {
        _writer?.Dispose();
        _writer = null;
        _stream = null;
    }

    private void Roll() => File.Move(Path, PreviousPath, overwrite: true);
}
