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
            return await Trainer.TrainAsync(session, spec, examples, Lines(spec.Name), ct);
        }

        TrainResult? result = null;
        await AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var extract = ctx.AddTask($"{Markup.Escape(spec.Name)}: extracting features", maxValue: Math.Max(1, examples.Count));
                var train = ctx.AddTask($"{Markup.Escape(spec.Name)}: training", autoStart: false, maxValue: Math.Max(1, spec.Epochs));
                result = await Trainer.TrainAsync(session, spec, examples, p =>
                {
                    switch (p.Phase)
                    {
                        case TrainPhase.Queued:
                            extract.Description = $"{Markup.Escape(spec.Name)}: queued ({p.QueuePosition} ahead)";
                            break;
                        case TrainPhase.Extracting:
                            extract.Description = $"{Markup.Escape(spec.Name)}: extracting features";
                            extract.MaxValue = Math.Max(1, p.ImagesTotal);
                            extract.Value = p.ImagesDone;
                            break;
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
        return result!;
    }

    /// <summary>Progress as plain lines: one per phase, the end of extraction, every tenth epoch and the last, and every
    /// message the Gateway explains a decision with.</summary>
    public static Action<TrainProgress> Lines(string head)
    {
        var lastPhase = TrainPhase.Unspecified;
        return p =>
        {
            var phaseChanged = p.Phase != lastPhase;
            lastPhase = p.Phase;
            if (p.Message is { Length: > 0 } message)
            {
                AnsiConsole.WriteLine($"  {head}: {message}");
            }
            switch (p.Phase)
            {
                case TrainPhase.Queued when phaseChanged:
                    AnsiConsole.WriteLine($"  {head}: queued ({p.QueuePosition} job(s) ahead)");
                    break;
                case TrainPhase.Extracting when phaseChanged || p.ImagesDone == p.ImagesTotal:
                    AnsiConsole.WriteLine($"  {head}: extracting features {p.ImagesDone}/{p.ImagesTotal}");
                    break;
                case TrainPhase.Training when phaseChanged || p.Epoch == p.EpochsTotal || p.Epoch % 10 == 0:
                    AnsiConsole.WriteLine($"  {head}: epoch {p.Epoch}/{p.EpochsTotal} {EpochSummary(p)}");
                    break;
            }
        };
    }

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
        table.AddRow("training rows", m.TrainRows.ToString(CultureInfo.InvariantCulture));
        table.AddRow("validation rows", m.ValidationRows.ToString(CultureInfo.InvariantCulture));
        table.AddRow("epochs run", m.EpochsRun.ToString(CultureInfo.InvariantCulture));
        table.AddRow("final training loss", Format.Number(m.FinalTrainLoss));
        table.AddRow("validation loss", Format.Number(m.ValidationLoss));
        if (v.Kind == HeadKind.Regressor)
        {
            table.AddRow("validation MAE", Format.Number(m.Mae));
            table.AddRow("  baseline MAE (always the training mean)", Format.Number(m.BaselineMae));
            table.AddRow("validation RMSE", Format.Number(m.Rmse));
            table.AddRow("validation R²", Format.Number(m.R2));
        }
        else
        {
            table.AddRow("validation accuracy", Format.Percent(m.Accuracy));
            table.AddRow("  baseline accuracy (always the majority class)", Format.Percent(m.BaselineAccuracy));
        }
        table.AddRow("training time", $"{m.TrainingSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s");
        return table;
    }
}
