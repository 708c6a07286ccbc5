using Google.Protobuf.WellKnownTypes;
using Graft.Heads.Registry;
using Graft.V1;

namespace Graft.Heads.Services;

/// <summary>Translations between registry records and the wire types.</summary>
internal static class ProtoMapping
{
    public static HeadVersionInfo ToVersionInfo(VersionEntry entry)
    {
        var info = new HeadVersionInfo { Name = entry.Name, Version = entry.Version, LoadError = entry.Error ?? "" };
        return entry.Manifest is { } m ? Fill(info, m) : info;
    }

    public static HeadVersionInfo ToVersionInfo(HeadManifest manifest) => Fill(new HeadVersionInfo(), manifest);

    public static HeadInfo ToHeadInfo(HeadEntry head, int servingVersion, string currentFingerprint)
    {
        var info = new HeadInfo { Name = head.Name, ActiveVersion = servingVersion, PointerVersion = head.PointerVersion };
        info.Versions.AddRange(head.Versions.Select(ToVersionInfo));
        var serving = head.Find(servingVersion)?.Manifest;
        info.Stale = serving is not null && currentFingerprint.Length > 0
            && !string.Equals(serving.BackboneFingerprint, currentFingerprint, StringComparison.Ordinal);
        return info;
    }

    private static HeadVersionInfo Fill(HeadVersionInfo info, HeadManifest m)
    {
        info.Name = m.Name;
        info.Version = m.Version;
        info.Kind = m.Kind;
        info.Labels.AddRange(m.Labels);
        info.InputDimension = m.InputDimension;
        info.BackboneFingerprint = m.BackboneFingerprint;
        info.Created = Timestamp.FromDateTimeOffset(m.Created);
        info.SizeBytes = m.WeightsBytes + m.TailBytes;
        var h = m.Hyperparameters;
        info.Spec = new HeadSpec
        {
            Name = m.Name, Kind = info.Kind, BackboneFingerprint = m.BackboneFingerprint, Description = m.Description,
            Epochs = h.Epochs, LearningRate = h.LearningRate, BatchSize = h.BatchSize, WeightDecay = h.WeightDecay,
            ValidationFraction = h.ValidationFraction, Patience = h.Patience, Seed = h.Seed, Dropout = h.Dropout,
            Depth = m.Depth, DepthReason = m.DepthReason,
        };
        if (m.FineTuned)
        {
            info.Spec.TailLearningRate = h.TailLearningRate;
        }
        info.CutPoint = m.CutPoint;
        info.CutShape.AddRange(m.CutShape);
        info.DepthReason = m.DepthReason;
        if (h.HiddenSpecified)
        {
            info.Spec.Hidden = new HiddenLayers();
            info.Spec.Hidden.Sizes.AddRange(h.HiddenSizes);
        }
        var x = m.Metrics;
        info.Metrics = new HeadMetrics
        {
            TrainRows = x.TrainRows, ValidationRows = x.ValidationRows, EpochsRun = x.EpochsRun, TrainingSeconds = x.TrainingSeconds,
            FinalTrainLoss = x.FinalTrainLoss, ValidationLoss = x.ValidationLoss, Mae = x.Mae, Rmse = x.Rmse, R2 = x.R2,
            BaselineMae = x.BaselineMae, Accuracy = x.Accuracy, BaselineAccuracy = x.BaselineAccuracy,
        };
        info.Metrics.PerClass.AddRange(x.PerClass.Select(c => new ClassMetrics { Label = c.Label, Precision = c.Precision, Recall = c.Recall, Support = c.Support }));
        info.Metrics.ConfusionMatrix.AddRange(x.ConfusionMatrix);
        return info;
    }
}
