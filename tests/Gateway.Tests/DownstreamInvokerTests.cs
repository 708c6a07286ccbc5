using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Polly.Registry;

using Graft.Gateway.Auth;
using Graft.Gateway.Downstream;

namespace Graft.Gateway.Tests;

/// <summary>The resilience rules of one downstream, driven by calls that fail the way a dead server makes them fail.</summary>
public sealed class DownstreamInvokerTests
{
    [Fact]
    public async Task An_idempotent_call_is_retried_on_unavailable_and_a_call_with_side_effects_is_not()
    {
        // Arrange
        var invoker = CreateInvoker(new GatewayOptions { MaxRetries = 2, RetryBaseDelay = TimeSpan.Zero, BreakerMinimumThroughput = 100 });
        var idempotentAttempts = 0;
        var onceAttempts = 0;

        // Act
        var idempotent = await Assert.ThrowsAsync<RpcException>(() => invoker.IdempotentAsync("Extract", _ => { idempotentAttempts++; return Unavailable(); }, CancellationToken.None));
        var once = await Assert.ThrowsAsync<RpcException>(() => invoker.OnceAsync("DeleteHead", _ => { onceAttempts++; return Unavailable(); }, CancellationToken.None));

        // Assert
        Assert.Equal(3, idempotentAttempts);
        Assert.Equal(1, onceAttempts);
        Assert.Equal(StatusCode.Unavailable, idempotent.StatusCode);
        Assert.Equal(StatusCode.Unavailable, once.StatusCode);
    }

    [Fact]
    public async Task Repeated_unavailable_opens_the_breaker_which_then_refuses_without_calling()
    {
        // Arrange
        var invoker = CreateInvoker(new GatewayOptions { MaxRetries = 0, BreakerMinimumThroughput = 4, BreakerBreakDuration = TimeSpan.FromMinutes(1) });
        var attempts = 0;
        for (var i = 0; i < 4; i++)
        {
            await Assert.ThrowsAsync<RpcException>(() => invoker.IdempotentAsync("Extract", _ => { attempts++; return Unavailable(); }, CancellationToken.None));
        }

        // Act
        var refused = await Assert.ThrowsAsync<RpcException>(() => invoker.IdempotentAsync("Extract", _ => { attempts++; return Unavailable(); }, CancellationToken.None));

        // Assert
        Assert.Equal(4, attempts);
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Contains("not calling it", refused.Status.Detail);
    }

    [Fact]
    public async Task Failed_attempts_that_a_retry_absorbs_do_not_open_the_breaker()
    {
        // Arrange: two replicas, one dead: every call's first attempt lands on the dead one, the retry on the live one.
        var invoker = CreateInvoker(new GatewayOptions
        {
            MaxRetries = 2, RetryBaseDelay = TimeSpan.Zero, BreakerFailureRatio = 0.5, BreakerMinimumThroughput = 2,
            BreakerBreakDuration = TimeSpan.FromMinutes(1),
        });
        var attempts = 0;

        // Act
        var replies = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            replies.Add(await invoker.IdempotentAsync("Predict", _ => ++attempts % 2 == 1 ? Unavailable() : Succeeded("ok"), CancellationToken.None));
        }

        // Assert: every call succeeded, each after one failed attempt, and the breaker never refused one.
        Assert.All(replies, r => Assert.Equal("ok", r));
        Assert.Equal(40, attempts);
    }

    [Fact]
    public async Task A_connection_that_breaks_off_mid_call_is_retried_and_reported_as_unavailable_without_its_internals()
    {
        // Arrange: the gRPC client reports a broken HTTP/2 connection as INTERNAL, carrying its own exception.
        var invoker = CreateInvoker(new GatewayOptions { MaxRetries = 2, RetryBaseDelay = TimeSpan.Zero, BreakerMinimumThroughput = 100 });
        var attempts = 0;
        var brokenOff = new Status(StatusCode.Internal, "Error starting gRPC call. HttpRequestException: The HTTP/2 server closed the connection (127.0.0.1:5110).",
            new HttpRequestException("The HTTP/2 server closed the connection."));

        // Act
        var e = await Assert.ThrowsAsync<RpcException>(() => invoker.IdempotentAsync("Describe", _ => { attempts++; return Failed(brokenOff); }, CancellationToken.None));

        // Assert
        Assert.Equal(3, attempts);
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.DoesNotContain("HttpRequestException", e.Status.Detail);
        Assert.DoesNotContain("127.0.0.1", e.Status.Detail);
    }

    [Fact]
    public async Task A_request_error_passes_through_with_its_status_and_message_and_is_not_retried()
    {
        // Arrange
        var invoker = CreateInvoker(new GatewayOptions { MaxRetries = 2, RetryBaseDelay = TimeSpan.Zero });
        var attempts = 0;

        // Act
        var e = await Assert.ThrowsAsync<RpcException>(() => invoker.IdempotentAsync("Extract", _ =>
        {
            attempts++;
            return Failed(new Status(StatusCode.InvalidArgument, "the image could not be decoded"));
        }, CancellationToken.None));

        // Assert
        Assert.Equal(1, attempts);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal("the image could not be decoded", e.Status.Detail);
    }

    [Fact]
    public async Task An_attempt_that_outlives_its_timeout_is_retried_and_then_reported_unavailable()
    {
        // Arrange
        var invoker = CreateInvoker(new GatewayOptions
        {
            AttemptTimeout = TimeSpan.FromMilliseconds(100), MaxRetries = 1, RetryBaseDelay = TimeSpan.Zero, BreakerMinimumThroughput = 100,
        });
        var attempts = 0;

        // Act
        var e = await Assert.ThrowsAsync<RpcException>(() => invoker.IdempotentAsync("Extract", o => { attempts++; return Hanging(o.CancellationToken); }, CancellationToken.None));

        // Assert
        Assert.Equal(2, attempts);
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Contains("did not answer within 0.1 s", e.Status.Detail);
    }

    [Fact]
    public async Task The_callers_cancellation_wins_over_the_attempt_timeout_and_is_not_retried()
    {
        // Arrange: a long attempt timeout, and a caller that gives up after 200 ms.
        var invoker = CreateInvoker(new GatewayOptions { AttemptTimeout = TimeSpan.FromMinutes(5), MaxRetries = 2, RetryBaseDelay = TimeSpan.Zero });
        using var caller = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var attempts = 0;

        // Act
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => invoker.IdempotentAsync("Extract", o => { attempts++; return Hanging(o.CancellationToken); }, caller.Token));

        // Assert
        Assert.Equal(1, attempts);
    }

    private static DownstreamInvoker CreateInvoker(GatewayOptions options)
    {
        var services = new ServiceCollection();
        services.AddSingleton(Options.Create(options));
        services.AddMetrics();
        services.AddSingleton<DownstreamMetrics>();
        services.AddDownstreamResilience("backbone");
        var provider = services.BuildServiceProvider();
        return new DownstreamInvoker("backbone", provider.GetRequiredService<ResiliencePipelineProvider<string>>(),
            provider.GetRequiredService<DownstreamMetrics>(), NullLogger.Instance);
    }

    private static AsyncUnaryCall<string> Unavailable() => Failed(new Status(StatusCode.Unavailable, "Error connecting to subchannel."));

    /// <summary>A call to a server that never answers: it ends, as gRPC does, with CANCELLED when its token fires.</summary>
    private static AsyncUnaryCall<string> Hanging(CancellationToken token)
    {
        var reply = Task.Delay(Timeout.Infinite, token).ContinueWith<string>(
            _ => throw new RpcException(new Status(StatusCode.Cancelled, "Call canceled by the client.")), TaskScheduler.Default);
        return new(reply, Task.FromResult(new Metadata()), () => Status.DefaultCancelled, () => [], () => { });
    }

    private static AsyncUnaryCall<string> Succeeded(string reply) => new(
        Task.FromResult(reply), Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => [], () => { });

    private static AsyncUnaryCall<string> Failed(Status status) => new(
        Task.FromException<string>(new RpcException(status)), Task.FromResult(new Metadata()), () => status, () => [], () => { });
}
