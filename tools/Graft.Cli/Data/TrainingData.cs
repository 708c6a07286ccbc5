using System.Globalization;

namespace Graft.Cli.Data;

/// <summary>One labelled image on disk: a class label (classifier) or a number (regressor).</summary>
public sealed record Example(string Path, string? Label, double? Value);

/// <summary>Reads the two training-data conventions: class folders (Keras
/// <c>image_dataset_from_directory</c>) and a CSV of <c>path,target</c>.</summary>
public static class TrainingData
{
    private static readonly HashSet<string> ImageExtensions = new(StringComparer.OrdinalIgnoreCase)
        { ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp" };

    public static bool IsImage(string path) => ImageExtensions.Contains(System.IO.Path.GetExtension(path));

    /// <summary>Images under the given files and folders (folders recursively), in a stable order.</summary>
    public static IReadOnlyList<string> FindImages(IEnumerable<string> inputs)
    {
        var found = new List<string>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input))
            {
                var images = Directory.EnumerateFiles(input, "*", SearchOption.AllDirectories).Where(IsImage)
                    .Order(StringComparer.Ordinal).ToList();
                if (images.Count == 0)
                    throw new CliException($"No images (png, jpg, webp, gif, bmp) under {input}.", ExitCodes.Usage);
                found.AddRange(images);
            }
            else if (File.Exists(input))
            {
                found.Add(input);
            }
            else
            {
                throw new CliException($"{input}: no such file or folder.", ExitCodes.Usage);
            }
        }
        return found;
    }

    /// <summary>One sub-folder per class; the folder name is the label. Files directly in the root are ignored.</summary>
    public static IReadOnlyList<Example> ReadClassFolders(string root)
    {
        if (!Directory.Exists(root))
            throw new CliException($"{root}: a classifier needs a folder with one sub-folder of images per class.", ExitCodes.Usage);
        var examples = new List<Example>();
        foreach (var dir in Directory.EnumerateDirectories(root).Order(StringComparer.Ordinal))
        {
            var label = System.IO.Path.GetFileName(dir);
            examples.AddRange(Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Where(IsImage)
                .Order(StringComparer.Ordinal).Select(p => new Example(p, label, null)));
        }
        var classes = examples.Select(e => e.Label).Distinct().Count();
        if (classes < 2)
            throw new CliException(
                $"{root}: found {classes} class folder(s) with images; a classifier needs at least two (e.g. {root}/cat/*.jpg and {root}/tiger/*.jpg).",
                ExitCodes.Usage);
        return examples;
    }

    /// <summary>A CSV of <c>path,target</c> (header optional); paths are relative to the CSV's folder.</summary>
    public static IReadOnlyList<Example> ReadCsv(string csvPath)
    {
        if (Directory.Exists(csvPath))
            throw new CliException($"{csvPath} is a folder: a regressor needs a CSV file of path,target (e.g. samples/fashion/train/lengths.csv).", ExitCodes.Usage);
        if (!File.Exists(csvPath))
            throw new CliException($"{csvPath}: no such file (a regressor needs a CSV of path,target).", ExitCodes.Usage);
        var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(csvPath))!;
        var examples = new List<Example>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(csvPath))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var comma = line.LastIndexOf(',');
            var valueText = comma < 0 ? "" : line[(comma + 1)..].Trim();
            if (comma < 0 || !double.TryParse(valueText, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
            {
                if (lineNumber == 1) continue; // the header
                throw new CliException($"{csvPath}:{lineNumber}: expected `path,number`, got \"{line}\".", ExitCodes.Usage);
            }
            var relative = line[..comma].Trim().Trim('"');
            var path = System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, relative));
            if (!File.Exists(path))
                throw new CliException($"{csvPath}:{lineNumber}: image {relative} not found (paths are relative to the CSV's folder).", ExitCodes.Usage);
            examples.Add(new Example(path, null, value));
        }
        if (examples.Count < 2)
            throw new CliException($"{csvPath}: found {examples.Count} row(s); a regressor needs at least two.", ExitCodes.Usage);
        return examples;
    }
}
