using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using Graft.V1;

namespace Graft.Cli.Client;

/// <summary>The answer for one image: a reply, or the item-level error the Gateway gave for it.</summary>
public sealed record ImagePrediction(string Path, PredictReply? Reply, StatusCode ErrorCode, string? Error);

/// <summary>Runs many images through the Gateway's PredictStream: one backbone pass per image serves every head.</summary>
public static class PredictStreamClient
{
    public static async Task<IReadOnlyList<ImagePrediction>> PredictAsync(
        GatewaySession session, IReadOnlyList<string> paths, IReadOnlyList<string> heads, int topK, CancellationToken ct)
    {
        var results = new ImagePrediction?[paths.Count];
        using var call = session.Client.PredictStream(session.Headers(), cancellationToken: ct);
        var send = Task.Run(async () =>
        {
            for (var i = 0; i < paths.Count; i++)
            {
                var request = new PredictRequest { Image = ByteString.CopyFrom(await File.ReadAllBytesAsync(paths[i], ct)), TopK = topK };
                request.Heads.AddRange(heads);
                await call.RequestStream.WriteAsync(new PredictStreamRequest { Id = i.ToString(CultureInfo.InvariantCulture), Request = request }, ct);
            }
            await call.RequestStream.CompleteAsync();
        }, ct);
        try
        {
            await foreach (var item in call.ResponseStream.ReadAllAsync(ct))
            {
                if (!int.TryParse(item.Id, NumberStyles.None, CultureInfo.InvariantCulture, out var index) || index < 0 || index >= paths.Count)
                    throw new CliException($"The Gateway answered an unknown request id \"{item.Id}\".");
                results[index] = item.ErrorCode != 0
                    ? new ImagePrediction(paths[index], null, (StatusCode)item.ErrorCode, item.ErrorMessage)
                    : new ImagePrediction(paths[index], item.Reply, StatusCode.OK, null);
            }
            await send;
        }
        catch (RpcException e)
        {
            _ = send.ContinueWith(t => t.Exception, TaskScheduler.Default);
            throw session.Translate(e, "predict");
        }
        return results.Select((r, i) => r ?? new ImagePrediction(paths[i], null, StatusCode.Unknown, "no reply for this image")).ToList();
    }
}
