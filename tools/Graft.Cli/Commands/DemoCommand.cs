using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Data;
using Graft.Cli.Output;
using Graft.Cli.Stack;
using Graft.V1;
using Spectre.Console;

namespace Graft.Cli.Commands;

/// <summary><c>graft demo</c>: the tutorial end to end on the bundled Fashion-MNIST samples. One backbone, two heads on
/// its frozen features (a length regressor and a category classifier) and a third that fine-tunes the backbone's last
/// block for the same categories, held-out predictions (one backbone run per image serves all three), metrics against
/// the trivial baselines and frozen against fine-tuned.</summary>
public static class DemoCommand
{
    private const string LengthHead = "length";
    private const string CategoryHead = "category";
    private const string FineTunedHead = "category-ft";

    public static Command Create()
    {
        Option<string?> samples = new("--samples") { Description = "Folder with train/ and test/ (default: samples/fashion of this repository)." };
        Option<int> epochs = new("--epochs") { Description = "Training epochs per head.", DefaultValueFactory = _ => 60 };
        Option<int> fineTuneEpochs = new("--fine-tune-epochs")
        {
            Description = "Epochs of the third head, which fine-tunes the backbone's last block (0: skip it). Few by default: on 2 CPU cores an epoch over the samples takes seconds.",
            DefaultValueFactory = _ => 5,
        };
        Option<int> rows = new("--rows") { Description = "Held-out predictions to show in the table (0: all). Metrics always use every test image.", DefaultValueFactory = _ => 20 };
        var command = new Command("demo", "Train a length regressor and a category classifier on the bundled samples, predict held-out images, compare with the trivial baselines.")
        {
            samples, epochs, fineTuneEpochs, rows, UpCommand.BasePort, UpCommand.DataDir, UpCommand.Timeout, UpCommand.LogDir, UpCommand.LogMaxBytes, UpCommand.MaxRestarts,
        };
        command.SetRun(async (parse, ct) =>
        {
            var total = Stopwatch.StartNew();
            var root = parse.GetValue(samples) ?? FindSamples();
            var trainLengths = TrainingData.ReadCsv(Path.Combine(root, "train", "lengths.csv"));
            var trainClasses = TrainingData.ReadClassFolders(Path.Combine(root, "train"));
            var test = TrainingData.ReadCsv(Path.Combine(root, "test", "lengths.csv"));
            var timings = new List<(string Phase, TimeSpan Took)>();

            AnsiConsole.Write(new Rule("[bold]Graft demo[/]: one backbone, heads on its frozen features and one that fine-tunes its last block").LeftJustified());
            AnsiConsole.MarkupLine($"Samples: {Markup.Escape(root)} - {trainClasses.Count} training images in {trainClasses.Select(e => e.Label).Distinct().Count()} classes, {test.Count} held-out test images.");

            // 1. Use a running Gateway, or start the local stack.
            var phase = Stopwatch.StartNew();
            LocalStack? stack = null;
            var gateway = GlobalOptions.GatewayAddress(parse);
            string? token = GlobalOptions.ResolveToken(parse);
            BackboneInfo backbone;
            if (await TryDescribeAsync(gateway, token, ct) is { } running)
            {
                backbone = running;
                AnsiConsole.MarkupLine($"Using the Graft stack already running at {gateway.GetLeftPart(UriPartial.Authority)}.");
                timings.Add(("stack: already running", phase.Elapsed));
            }
            else
            {
                AnsiConsole.MarkupLine($"No Gateway at {gateway.GetLeftPart(UriPartial.Authority)}; starting a local stack (Backbone, Heads, Gateway)...");
                stack = await UpCommand.StartAsync(parse, ct);
                gateway = stack.GatewayAddress;
                token = stack.AdminToken;
                backbone = await TryDescribeAsync(gateway, token, ct)
                    ?? throw new CliException($"The local Gateway at {gateway} reported SERVING but does not answer Describe; see {stack.LogDirectory}.", ExitCodes.Unreachable);
                timings.Add(("stack: start and warm up", phase.Elapsed));
            }

            await using var _ = stack;
            using var session = new GatewaySession(gateway, token);
            AnsiConsole.MarkupLine($"Backbone [bold]{Markup.Escape(backbone.Name)}[/]: {backbone.FeatureDimension} features from {Markup.Escape(backbone.CutTensor)} on {Markup.Escape(backbone.ExecutionProvider)} (fingerprint {Markup.Escape(Format.Short(backbone.Fingerprint))}).");

            // 2. Two heads on the same frozen features: the second pays no extraction thanks to the feature cache.
            var length = await TrainAsync(session, new HeadSpec
            {
                Name = LengthHead, Kind = HeadKind.Regressor, Epochs = parse.GetValue(epochs), Seed = 42,
                Description = "graft demo: garment length (cm) from the image",
            }, trainLengths, timings, ct);
            var category = await TrainAsync(session, new HeadSpec
            {
                Name = CategoryHead, Kind = HeadKind.Classifier, Epochs = parse.GetValue(epochs), Seed = 42,
                Description = "graft demo: Fashion-MNIST category",
            }, trainClasses, timings, ct);

            // 3. The same categories again, this time fine-tuning the backbone's last block from its pretrained weights.
            TrainResult? fineTuned = null;
            var ftEpochs = parse.GetValue(fineTuneEpochs);
            if (ftEpochs > 0 && backbone.CutPoints.Any(c => c.Name == HeadDepths.LastBlock))
            {
                fineTuned = await TrainAsync(session, new HeadSpec
                {
                    Name = FineTunedHead, Kind = HeadKind.Classifier, Epochs = ftEpochs, Seed = 42, Depth = HeadDepth.LastBlock,
                    Description = "graft demo: Fashion-MNIST category, last residual block fine-tuned",
                }, trainClasses, timings, ct);
            }
            else if (ftEpochs > 0)
            {
                AnsiConsole.MarkupLine($"Backbone {Markup.Escape(backbone.Name)} offers no last-block cut point: skipping the fine-tuned head.");
            }

            // 4. Held-out predictions: one backbone pass per image serves every head, frozen and fine-tuned.
            phase.Restart();
            string[] predictHeads = fineTuned is null ? [LengthHead, CategoryHead] : [LengthHead, CategoryHead, FineTunedHead];
            var predictions = await PredictStreamClient.PredictAsync(session, test.Select(t => t.Path).ToList(), predictHeads, 1, ct);
            timings.Add(($"predict {test.Count} held-out images ({predictHeads.Length} heads, one backbone run each)", phase.Elapsed));
            var failed = predictions.FirstOrDefault(p => p.Reply is null);
            if (failed is not null)
                throw new CliException($"Prediction failed for {failed.Path}: {failed.ErrorCode}: {failed.Error}");

            var outcome = Evaluate(test, predictions, trainLengths, trainClasses);
            AnsiConsole.Write(PredictionTable(outcome, parse.GetValue(rows)));
            AnsiConsole.Write(TrainView.Metrics(length.Published));
            AnsiConsole.Write(TrainView.Metrics(category.Published));
            if (fineTuned is not null) AnsiConsole.Write(TrainView.Metrics(fineTuned.Published));
            AnsiConsole.Write(HeldOutTable(outcome));

            timings.Add(("total", total.Elapsed));
            var timingTable = new Table().Border(TableBorder.Rounded).Title("[bold]Time per phase[/]").AddColumn("phase").AddColumn(new TableColumn("time").RightAligned());
            foreach (var (name, took) in timings) timingTable.AddRow(Markup.Escape(name), Format.Seconds(took));
            AnsiConsole.Write(timingTable);

            if (stack is not null) AnsiConsole.MarkupLine("Stopping the local stack (the heads stay in the registry; `graft up` serves them again).");
            if (outcome.BeatsBaselines)
            {
                AnsiConsole.MarkupLine("[bold green]Every head beat its trivial baseline on held-out images.[/]");
                return ExitCodes.Ok;
            }
            CommandRunner.Error.MarkupLine("[red]A head did not beat its trivial baseline on the held-out images[/] (see the table above); try more --epochs.");
            return ExitCodes.Failed;
        });
        return command;
    }

    /// <summary>Held-out results: per-image rows and the aggregate metrics against the baselines.</summary>
    public sealed record Outcome(
        IReadOnlyList<(string Image, double TrueLength, HeadOutput Length, string TrueClass, HeadOutput Category)> Rows,
        double Accuracy, double MajorityAccuracy, string MajorityClass, double Mae, double MeanLengthMae, double MeanLength, double? FineTunedAccuracy = null)
    {
        public bool BeatsBaselines => Accuracy > MajorityAccuracy && Mae < MeanLengthMae;
    }

    public static Outcome Evaluate(IReadOnlyList<Example> test, IReadOnlyList<ImagePrediction> predictions, IReadOnlyList<Example> trainLengths, IReadOnlyList<Example> trainClasses)
    {
        var rows = test.Zip(predictions, (t, p) =>
        {
            var trueClass = Path.GetFileName(Path.GetDirectoryName(t.Path))!;
            var length = p.Reply!.Results.Single(o => o.Head == LengthHead);
            var category = p.Reply.Results.Single(o => o.Head == CategoryHead);
            return (Image: Path.Combine(trueClass, Path.GetFileName(t.Path)), TrueLength: t.Value!.Value, Length: length, TrueClass: trueClass, Category: category);
        }).ToList();
        // The trivial baselines, fitted on the training set like the heads: the most frequent class, the mean length.
        var majority = trainClasses.GroupBy(e => e.Label!).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).First().Key;
        var meanLength = trainLengths.Average(e => e.Value!.Value);
        return new Outcome(
            rows,
            Accuracy: rows.Average(r => r.Category.Top.Count > 0 && r.Category.Top[0].Label == r.TrueClass ? 1.0 : 0.0),
            MajorityAccuracy: rows.Average(r => r.TrueClass == majority ? 1.0 : 0.0),
            MajorityClass: majority,
            Mae: rows.Average(r => Math.Abs(r.Length.Value - r.TrueLength)),
            MeanLengthMae: rows.Average(r => Math.Abs(meanLength - r.TrueLength)),
            MeanLength: meanLength,
            FineTunedAccuracy: predictions.All(p => p.Reply!.Results.Any(o => o.Head == FineTunedHead))
                ? test.Zip(predictions, (t, p) => p.Reply!.Results.Single(o => o.Head == FineTunedHead).Top.FirstOrDefault()?.Label == Path.GetFileName(Path.GetDirectoryName(t.Path)) ? 1.0 : 0.0).Average()
                : null);
    }

    private static Table PredictionTable(Outcome outcome, int maxRows)
    {
        // An even spread over the classes rather than the first N rows of one class.
        var shown = maxRows <= 0 || maxRows >= outcome.Rows.Count
            ? outcome.Rows
            : outcome.Rows.GroupBy(r => r.TrueClass).SelectMany(g => g.Select((r, i) => (r, i))).OrderBy(x => x.i).ThenBy(x => x.r.TrueClass, StringComparer.Ordinal)
                .Take(maxRows).Select(x => x.r).ToList();
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"[bold]Held-out predictions[/] ({shown.Count} of {outcome.Rows.Count})")
            .AddColumn("image").AddColumn(new TableColumn("true length").RightAligned()).AddColumn(new TableColumn("predicted").RightAligned())
            .AddColumn("true class").AddColumn("predicted class (probability)").AddColumn("head versions");
        foreach (var r in shown)
        {
            var top = r.Category.Top.FirstOrDefault();
            var right = top is not null && top.Label == r.TrueClass;
            table.AddRow(
                Markup.Escape(r.Image),
                r.TrueLength.ToString("0.0", CultureInfo.InvariantCulture),
                r.Length.Value.ToString("0.0", CultureInfo.InvariantCulture),
                Markup.Escape(r.TrueClass),
                top is null ? "" : $"[{(right ? "green" : "red")}]{Markup.Escape(top.Label)}[/] ({Format.Percent(top.Probability)})",
                $"length v{r.Length.Version}, category v{r.Category.Version}");
        }
        return table;
    }

    private static Table HeldOutTable(Outcome o)
    {
        static string Verdict(bool beats) => beats ? "[green]yes[/]" : "[red]no[/]";
        var table = new Table().Border(TableBorder.Rounded).Title($"[bold]Held-out test set[/] ({o.Rows.Count} images never seen in training)")
            .AddColumn("head").AddColumn("metric").AddColumn(new TableColumn("head").RightAligned())
            .AddColumn("trivial baseline").AddColumn(new TableColumn("baseline").RightAligned()).AddColumn("beats it?");
        table.AddRow(CategoryHead, "accuracy", Format.Percent(o.Accuracy),
            Markup.Escape($"always the majority training class ({o.MajorityClass})"), Format.Percent(o.MajorityAccuracy), Verdict(o.Accuracy > o.MajorityAccuracy));
        if (o.FineTunedAccuracy is { } ft)
        {
            table.AddRow(FineTunedHead + " (last block fine-tuned)", "accuracy", Format.Percent(ft),
                Markup.Escape($"the frozen-feature head '{CategoryHead}' on the same images"), Format.Percent(o.Accuracy), Verdict(ft > o.Accuracy));
        }
        table.AddRow(LengthHead, "MAE (cm)", Format.Number(o.Mae),
            $"always the mean training length ({o.MeanLength.ToString("0.0", CultureInfo.InvariantCulture)} cm)", Format.Number(o.MeanLengthMae), Verdict(o.Mae < o.MeanLengthMae));
        return table;
    }

    private static async Task<TrainResult> TrainAsync(GatewaySession session, HeadSpec spec, IReadOnlyList<Example> examples, List<(string, TimeSpan)> timings, CancellationToken ct)
    {
        AnsiConsole.MarkupLine($"Training [bold]{spec.Name}[/] ({spec.Kind.Name()}, {spec.Epochs} epochs) on {examples.Count} images...");
        var result = await TrainView.RunAsync(session, spec, examples, ct);
        AnsiConsole.MarkupLine($"Published [green]{spec.Name} v{result.Published.Version}[/]: {Markup.Escape(HeadsCommands.Metric(result.Published))}{(result.Published.Metrics?.ValidationRows > 0 ? " on the validation split" : "")}.");
        timings.Add(($"train {spec.Name}: feature extraction", result.Extraction));
        timings.Add(($"train {spec.Name}: training and publishing", result.Total - result.Extraction));
        return result;
    }

    private static async Task<BackboneInfo?> TryDescribeAsync(Uri gateway, string? token, CancellationToken ct)
    {
        using var session = new GatewaySession(gateway, token);
        try
        {
            var reply = await session.Client.DescribeAsync(new DescribeRequest(), session.Headers(), DateTime.UtcNow.AddSeconds(30), ct);
            return reply.Backbone;
        }
        catch (Grpc.Core.RpcException e) when (GatewaySession.IsConnectionFailure(e))
        {
            return null;
        }
        catch (Grpc.Core.RpcException e)
        {
            throw session.Translate(e, "describe the backbone");
        }
    }

    /// <summary>samples/fashion, looked for upwards from the working folder, then from the CLI's own folder.</summary>
    private static string FindSamples()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "samples", "fashion");
                if (Directory.Exists(Path.Combine(candidate, "train"))) return candidate;
            }
        }
        throw new CliException("The bundled samples (samples/fashion) were not found: run from the repository, or pass --samples <folder with train/ and test/>.", ExitCodes.Usage);
    }
}
