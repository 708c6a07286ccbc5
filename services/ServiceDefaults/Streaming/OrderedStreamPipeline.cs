using System.Threading.Channels;
using Grpc.Core;

namespace Graft.ServiceDefaults.Streaming;

/// <summary>The one implementation of a bidirectional stream that answers every request in request order while
/// working on several at once (so a backbone can batch them), and turns a failed item into an item-level error reply
/// instead of failing the call. Used by the backbone's <c>ExtractStream</c> and the Gateway's <c>PredictStream</c>.</summary>
public static class OrderedStreamPipeline
{
    /// <summary>Reads <paramref name="requests"/>, starts <paramref name="process"/> for each as it arrives (at most
    /// <paramref name="concurrency"/> replies wait to be written, so a fast sender cannot queue unbounded work), and
    /// writes the replies in request order.</summary>
    /// <param name="itemError">The reply for an item whose processing threw, or null when the exception must fail the
    /// whole call (cancellation, an unexpected fault).</param>
    public static async Task RunAsync<TRequest, TReply>(
        IAsyncStreamReader<TRequest> requests,
        IServerStreamWriter<TReply> replies,
        int concurrency,
        Func<TRequest, CancellationToken, Task<TReply>> process,
        Func<TRequest, Exception, TReply?> itemError,
        CancellationToken cancellationToken)
        where TReply : class
    {
        var pending = Channel.CreateBounded<Task<TReply>>(Math.Max(1, concurrency));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var writer = Task.Run(async () =>
        {
            try
            {
                await foreach (var item in pending.Reader.ReadAllAsync(stop.Token))
                {
                    await replies.WriteAsync(await item, stop.Token);
                }
            }
            catch
            {
                await stop.CancelAsync(); // Unblock the reader below; the writer's exception is the call's outcome.
                throw;
            }
        }, CancellationToken.None);

        try
        {
            await foreach (var request in requests.ReadAllAsync(stop.Token))
            {
                await pending.Writer.WriteAsync(RunOneAsync(request), stop.Token);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // The writer failed; awaiting it below rethrows its exception.
        }
        finally
        {
            pending.Writer.TryComplete();
        }
        await writer;

        async Task<TReply> RunOneAsync(TRequest request)
        {
            try
            {
                return await process(request, stop.Token);
            }
            catch (Exception e) when (itemError(request, e) is { } reply)
            {
                return reply;
            }
        }
    }
}
