using Graft.V1;
using Grpc.Core;

namespace Graft.Testing;

/// <summary>Heads that belong to another backbone, for tests of what the serving backbone refuses.</summary>
public static class StaleHeads
{
    /// <summary>Fingerprint of a backbone no test stack serves.</summary>
    public const string OtherBackbone = "resnet18:0000000000000000";

    /// <summary>Trains a one-epoch regressor straight through HeadService on made-up 512-d rows tagged with
    /// <see cref="OtherBackbone"/>, so every check against the serving backbone finds it stale.</summary>
    public static async Task TrainAsync(Heads.HeadsClient heads, string name)
    {
        using var train = heads.Train();
        await train.RequestStream.WriteAsync(new TrainHeadRowsRequest
        {
            Spec = new HeadSpec { Name = name, Kind = HeadKind.Regressor, Epochs = 1, BackboneFingerprint = OtherBackbone },
        });
        var rows = new FeatureRows();
        for (var i = 0; i < 10; i++)
        {
            rows.Rows.Add(new FeatureRow { Features = { Enumerable.Range(0, 512).Select(j => (float)((i * 31 + j) % 7)) }, Value = i });
        }
        await train.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = rows });
        await train.RequestStream.CompleteAsync();
        await foreach (var _ in train.ResponseStream.ReadAllAsync())
        {
        }
    }
}
