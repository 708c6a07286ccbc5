using System.Globalization;
using Graft.Cli.Client;
using Graft.Cli.Data;
using Graft.V1;
using Spectre.Console;

namespace Graft.Cli.Output;

/// <summary>Shows a training run: progress bars on a terminal, one line per phase (and every tenth epoch) otherwise,
/// then the validation metrics of the published version.</summary>
public static class TrainView
{
    public static async Task<TrainResult> RunAsync(GatewaySession session, HeadSpec spec, IReadOnlyList<Example> examples, CancellationToken ct)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            return await Trainer.TrainAsync(session, spec, examples, Lines(spec.Name, examples.Count), ct);
        }

        TrainResult? result = null;
        var messages = new List<string>();
        await AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var extract = ctx.AddTask($"{Markup.Escape(spec.Name)}: extracting features", maxValue: Math.Max(1, examples.Count));
                var train = ctx.AddTask($"{Markup.Escape(spec.Name)}: training", autoStart: false, maxValue: Math.Max(1, spec.Epochs));
                result = await Trainer.TrainAsync(session, spec, examples, p =>
                {
                    if (p.Message.Length > 0)
                    {
                        // A live progress display cannot take lines in between: shown above it, and again after it.
                        messages.Add(p.Message);
                        extract.Description = $"{Markup.Escape(spec.Name)}: {Markup.Escape(p.Message)}";
                    }
                    switch (p.Phase)
                    {
                        case TrainPhase.Queued:
                            extract.Description = $"{Markup.Escape(spec.Name)}: queued ({p.QueuePosition} ahead)";
                            break;
                        case TrainPhase.Extracting when p.Message.Length == 0:
                            extract.Description = $"{Markup.Escape(spec.Name)}: extracting features{Runs(p, examples.Count)}";
                            extract.MaxValue = Math.Max(1, p.ImagesTotal);
                            extract.Value = p.ImagesDone;
                            break;
                        case TrainPhase.Extracting:
                            extract.MaxValue = Math.Max(1, p.ImagesTotal);
                            extract.Value = p.ImagesDone;
                            break;
                        case TrainPhase.Training when p.Epoch == 0:
                            break; // a decision line before the first epoch (shown above)
                        case TrainPhase.Training:
                            extract.Value = extract.MaxValue;
                            extract.StopTask();
                            if (!train.IsStarted) train.StartTask();
                            train.MaxValue = Math.Max(1, p.EpochsTotal);
                            train.Value = p.Epoch;
                            train.Description = $"{Markup.Escape(spec.Name)}: epoch {p.Epoch}/{p.EpochsTotal} {Markup.Escape(EpochSummary(p))}";
                            break;
                        case TrainPhase.Published:
                            extract.Value = extract.MaxValue;
                            train.Value = train.MaxValue; // early stopping ends before the planned last epoch
                            train.StopTask();
                            break;
                    }
                }, ct);
            });
        foreach (var message in messages)
        {
            AnsiConsole.MarkupLine($"  {Markup.Escape(spec.Name)}: {Markup.Escape(message)}");
        }
        return result!;
    }

    /// <summary>Progress as plain lines: one per phase, the end of extraction, every tenth epoch and the last, and every
    /// message the Gateway explains a decision with.</summary>
    public static Action<TrainProgress> Lines(string head, int imageCount = 0)
    {
        var lastPhase = TrainPhase.Unspecified;
        return p =>
        {
            if (p.Message is { Length: > 0 } message)
            {
                AnsiConsole.WriteLine($"  {head}: {message}");
            }
            if (p.Phase == TrainPhase.Training && p.Epoch == 0)
            {
                return; // a decision line from HeadService before the first epoch, not an epoch
            }
            var phaseChanged = p.Phase != lastPhase;
            lastPhase = p.Phase;
            switch (p.Phase)
            {
                case TrainPhase.Queued when phaseChanged:
                    AnsiConsole.WriteLine($"  {head}: queued ({p.QueuePosition} job(s) ahead)");
                    break;
                case TrainPhase.Extracting when phaseChanged || p.ImagesDone == p.ImagesTotal:
                    AnsiConsole.WriteLine($"  {head}: extracting features {p.ImagesDone}/{p.ImagesTotal}{Runs(p, imageCount)}");
                    break;
                case TrainPhase.Training when phaseChanged || p.Epoch == p.EpochsTotal || p.Epoch % 10 == 0:
                    AnsiConsole.WriteLine($"  {head}: epoch {p.Epoch}/{p.EpochsTotal} {EpochSummary(p)}");
                    break;
            }
        };
    }

    /// <summary>With augmentation the backbone runs more often than there are images: say so.</summary>
    private static string Runs(TrainProgress p, int imageCount) =>
        imageCount > 0 && p.ImagesTotal > imageCount ? " (backbone runs, augmented views included)" : "";

    private static string EpochSummary(TrainProgress p)
    {
        var text = string.Create(CultureInfo.InvariantCulture, $"loss {p.TrainLoss:0.####}");
        return p.ValidationMetricName is { Length: > 0 } name
            ? text + string.Create(CultureInfo.InvariantCulture, $", {name} {p.ValidationMetric:0.####}")
            : text;
    }

    /// <summary>The metrics of a published version, with the trivial baseline beside each.</summary>
    public static Table Metrics(HeadVersionInfo v)
    {
        var m = v.Metrics ?? new HeadMetrics();
        var table = new Table().Border(TableBorder.Rounded).Title($"[bold]{Markup.Escape(v.Name)} v{v.Version}[/] ({v.Kind.Name()})")
            .AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
        table.AddRow("depth", Markup.Escape(Format.Depth(v) + (v.CutPoint.Length > 0 ? ": the backbone's layers after this cut point retrained" : ", frozen backbone")));
        if (v.DepthReason.Length > 0)
        {
            table.AddRow("  chosen by depth auto", Markup.Escape(v.DepthReason));
        }
        table.AddRow("training rows", m.TrainRows.ToString(CultureInfo.InvariantCulture));
        table.AddRow("validation rows", m.ValidationRows.ToString(CultureInfo.InvariantCulture));
        // No hold-out (the fine-tuning depths' default): the metrics below are the training rows', and say so.
        var on = m.ValidationRows > 0 ? "validation" : "training-set";
        table.AddRow("epochs run", m.EpochsRun.ToString(CultureInfo.InvariantCulture));
        table.AddRow("final training loss", Format.Number(m.FinalTrainLoss));
        table.AddRow($"{on} loss", Format.Number(m.ValidationLoss));
        if (v.Kind == HeadKind.Regressor)
        {
            table.AddRow($"{on} MAE", Format.Number(m.Mae));
            table.AddRow("  baseline MAE (always the training mean)", Format.Number(m.BaselineMae));
            table.AddRow($"{on} RMSE", Format.Number(m.Rmse));
            table.AddRow($"{on} R²", Format.Number(m.R2));
        }
        else
        {
            table.AddRow($"{on} accuracy", Format.Percent(m.Accuracy));
            table.AddRow("  baseline accuracy (always the majority class)", Format.Percent(m.BaselineAccuracy));
        }
        table.AddRow("training time", $"{m.TrainingSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s");
        return table;
    }
}
