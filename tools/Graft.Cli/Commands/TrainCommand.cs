using System.CommandLine;
using System.Globalization;
using Graft.Cli.Data;
using Graft.Cli.Output;
using Graft.V1;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft train &lt;head&gt; --kind --data ...</c>: trains and publishes a new version of a head.</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        Argument<string> head = new("head") { Description = "Head name: lower-case letters, digits, '.', '_' or '-' (e.g. length, category)." };
        Option<string?> kind = new("--kind", "-k") { Description = "regressor or classifier (default: classifier for a folder, regressor for a CSV)." };
        kind.AcceptOnlyFromAmong(HeadKinds.Regressor, HeadKinds.Classifier);
        Option<string> data = new("--data", "-d")
        {
            Description = "Classifier: a folder with one sub-folder of images per class. Regressor: a CSV of path,target (paths relative to the CSV).",
            Required = true,
        };
        Option<int?> epochs = new("--epochs") { Description = $"Training epochs (server default {TrainingDefaults.Epochs}; {TrainingDefaults.FineTuneEpochs} at depths last-block/last-stage)." };
        Option<double?> lr = new("--lr") { Description = $"Adam learning rate (server default {TrainingDefaults.Text(TrainingDefaults.LearningRate)})." };
        Option<string?> hidden = new("--hidden") { Description = $"Hidden layer sizes, comma-separated (e.g. 256 or 512,128); 'none' for a linear probe (server default {TrainingDefaults.HiddenSize})." };
        Option<double?> val = new("--val") { Description = $"Fraction of images held out for validation metrics (server default {TrainingDefaults.Text(TrainingDefaults.ValidationFraction)}; {TrainingDefaults.Text(TrainingDefaults.FineTuneValidationFraction)} at depths last-block/last-stage, which train on every image and report training metrics)." };
        Option<int?> batch = new("--batch") { Description = $"Mini-batch size (server default {TrainingDefaults.BatchSize})." };
        Option<long?> seed = new("--seed") { Description = $"Seed for split, initialisation and shuffling (server default {TrainingDefaults.Seed})." };
        Option<int?> patience = new("--patience") { Description = $"Stop after this many epochs without a better validation loss (default {TrainingDefaults.Patience}: off)." };
        Option<double?> weightDecay = new("--weight-decay") { Description = $"L2 weight decay (server default {TrainingDefaults.Text(TrainingDefaults.WeightDecay)})." };
        Option<double?> dropout = new("--dropout") { Description = $"Classifier dropout (server default {TrainingDefaults.Text(TrainingDefaults.Dropout)})." };
        Option<string?> description = new("--description") { Description = "Free text stored with the version." };
        Option<bool> noKeep = new("--no-keep-data")
        {
            Description = "Do not keep the images on the server (for data that must not be stored). The head is then not retrainable: " +
                          "after a backbone change it must be trained again from its images instead of `graft heads retrain`.",
        };
        Option<string?> depth = new("--depth")
        {
            Description = "How deep training reaches into the backbone: probe (linear layer on frozen features), mlp (hidden layers on frozen " +
                          "features; the default), last-block / last-stage (also fine-tune the backbone's last residual block / last stage: " +
                          "on the bench's curve the last block beat the frozen depths from 10 images per class, at seconds to minutes of CPU), auto (the gateway picks by images per class and says why).",
        };
        depth.HelpName = "probe|mlp|last-block|last-stage|auto";
        depth.Validators.Add(r =>
        {
            // Not AcceptOnlyFromAmong: its message does not name the option.
            if (r.GetValueOrDefault<string?>() is { } text && !HeadDepths.TryParse(text, out _))
                r.AddError($"--depth '{text}' is not a depth: use probe, mlp, last-block, last-stage or auto.");
        });
        Option<int?> augment = new("--augment")
        {
            Description = "Augmented views per training image besides the original (flip, random resized crop, small rotation; 0-16, default 0). " +
                          "Each view is one more backbone run at training time only.",
        };
        augment.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is { } n && n is < 0 or > 16)
                r.AddError($"--augment must be between 0 and 16 augmented views per image (got {n}).");
        });
        Option<double?> tailLr = new("--tail-lr") { Description = $"Adam learning rate of the fine-tuned backbone layers, depths last-block/last-stage (server default {TrainingDefaults.Text(TrainingDefaults.TailLearningRate)}; {TrainingDefaults.Text(TrainingDefaults.LastStageTailLearningRate)} at last-stage)." };

        var command = new Command("train", "Train a head on labelled images and publish it as a new version.")
        {
            head, kind, data, epochs, lr, hidden, val, batch, seed, patience, weightDecay, dropout, description, noKeep, depth, augment, tailLr,
        };
        command.SetRun(async (parse, ct) =>
        {
            var dataPath = parse.GetValue(data)!;
            var headKind = HeadKinds.TryParse(parse.GetValue(kind), out var chosen)
                ? chosen
                : Directory.Exists(dataPath) ? HeadKind.Classifier : HeadKind.Regressor;
            var examples = headKind == HeadKind.Classifier ? TrainingData.ReadClassFolders(dataPath) : TrainingData.ReadCsv(dataPath);
            var spec = new HeadSpec { Name = parse.GetValue(head)!, Kind = headKind, Description = parse.GetValue(description) ?? "" };
            if (parse.GetValue(epochs) is { } e) spec.Epochs = e;
            if (parse.GetValue(lr) is { } l) spec.LearningRate = l;
            if (parse.GetValue(hidden) is { } h) spec.Hidden = ParseHidden(h);
            if (parse.GetValue(val) is { } v) spec.ValidationFraction = v;
            if (parse.GetValue(batch) is { } b) spec.BatchSize = b;
            if (parse.GetValue(seed) is { } s) spec.Seed = s;
            if (parse.GetValue(patience) is { } p) spec.Patience = p;
            if (parse.GetValue(weightDecay) is { } w) spec.WeightDecay = w;
            if (parse.GetValue(dropout) is { } d) spec.Dropout = d;
            if (parse.GetValue(noKeep)) spec.KeepTrainingData = false;
            if (HeadDepths.TryParse(parse.GetValue(depth), out var chosenDepth)) spec.Depth = chosenDepth;
            if (parse.GetValue(augment) is { } a) spec.Augment = a;
            if (parse.GetValue(tailLr) is { } t) spec.TailLearningRate = t;

            using var session = GlobalOptions.Connect(parse);
            var summary = headKind == HeadKind.Classifier
                ? $"{examples.Count} images in {examples.Select(x => x.Label).Distinct().Count()} classes"
                : $"{examples.Count} images with targets";
            AnsiConsole.MarkupLine($"Training [bold]{Markup.Escape(spec.Name)}[/] ({headKind.Name()}) on {summary} via {session.Display}");
            var result = await TrainView.RunAsync(session, spec, examples, ct);
            AnsiConsole.Write(TrainView.Metrics(result.Published));
            AnsiConsole.MarkupLine($"Published [bold green]{Markup.Escape(result.Published.Name)} v{result.Published.Version}[/] ({Markup.Escape(Format.Depth(result.Published))}) in {Format.Seconds(result.Total)} " +
                                   $"(feature extraction {Format.Seconds(result.Extraction)}).");
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>"256" or "512,128" → sizes; "none" or "" → a linear probe (present but empty).</summary>
    public static HiddenLayers ParseHidden(string text)
    {
        var layers = new HiddenLayers();
        if (text.Trim() is "" or "none" or "0") return layers;
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            layers.Sizes.Add(int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var size) && size > 0
                ? size
                : throw new CliException($"--hidden \"{text}\": expected positive sizes separated by commas (e.g. 256 or 512,128), or 'none'.", ExitCodes.Usage));
        }
        return layers;
    }
}
