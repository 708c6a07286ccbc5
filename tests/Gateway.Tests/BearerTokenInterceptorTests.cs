using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

using Graft.Gateway.Auth;
using Graft.Gateway.Downstream;

namespace Graft.Gateway.Tests;

/// <summary>The access rules, called directly (the end-to-end tests cover the wire).</summary>
public sealed class BearerTokenInterceptorTests
{
    private const string Train = "/graft.v1.Gateway/TrainHead";
    private const string Predict = "/graft.v1.Gateway/Predict";

    [Fact]
    public async Task Admin_calls_are_refused_with_permission_denied_when_no_admin_token_is_configured()
    {
        // Arrange
        var interceptor = Create(new GatewayOptions());

        // Act
        var e = await Assert.ThrowsAsync<RpcException>(() => CallAsync(interceptor, Train, "Bearer anything"));

        // Assert
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Contains("AllowUnauthenticatedAdmin", e.Status.Detail);
    }

    [Fact]
    public async Task Admin_calls_pass_without_a_token_only_when_open_local_development_is_chosen()
    {
        // Arrange
        var interceptor = Create(new GatewayOptions { AllowUnauthenticatedAdmin = true });

        // Act
        var reached = await CallAsync(interceptor, Train, authorization: null);

        // Assert
        Assert.True(reached);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer ")]
    [InlineData("Bearer secret-admin-token-but-longer")]
    [InlineData("Bearer secret-admin-toke")]
    [InlineData("Basic c2VjcmV0LWFkbWluLXRva2Vu")]
    [InlineData("Bearer predict-token")]
    public async Task Admin_calls_with_a_missing_or_wrong_token_are_unauthenticated(string? authorization)
    {
        // Arrange
        var interceptor = Create(new GatewayOptions { AdminToken = "secret-admin-token", PredictToken = "predict-token" });

        // Act
        var e = await Assert.ThrowsAsync<RpcException>(() => CallAsync(interceptor, Train, authorization));

        // Assert
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.DoesNotContain("secret-admin-token", e.Status.Detail);
    }

    [Theory]
    [InlineData(Train, "Bearer secret-admin-token")]
    [InlineData(Train, "bearer secret-admin-token")]
    [InlineData(Predict, "Bearer predict-token")]
    [InlineData(Predict, "Bearer secret-admin-token")]
    public async Task The_right_token_reaches_the_service(string method, string authorization)
    {
        // Arrange
        var interceptor = Create(new GatewayOptions { AdminToken = "secret-admin-token", PredictToken = "predict-token" });

        // Act
        var reached = await CallAsync(interceptor, method, authorization);

        // Assert
        Assert.True(reached);
    }

    [Fact]
    public async Task Predict_is_open_when_no_predict_token_is_configured()
    {
        // Arrange
        var interceptor = Create(new GatewayOptions { AdminToken = "secret-admin-token" });

        // Act
        var reached = await CallAsync(interceptor, Predict, authorization: null);

        // Assert
        Assert.True(reached);
    }

    private static BearerTokenInterceptor Create(GatewayOptions options) =>
        new(Options.Create(options), NullLogger<BearerTokenInterceptor>.Instance);

    private static async Task<bool> CallAsync(BearerTokenInterceptor interceptor, string method, string? authorization)
    {
        var headers = new Metadata();
        if (authorization is not null)
        {
            headers.Add("authorization", authorization);
        }
        var reply = await interceptor.UnaryServerHandler<string, string>("request", new FakeCallContext(method, headers), (_, _) => Task.FromResult("reached"));
        return reply == "reached";
    }

    /// <summary>Just enough of a server call for the interceptor: method, headers, peer.</summary>
    private sealed class FakeCallContext(string method, Metadata headers) : ServerCallContext
    {
        protected override string MethodCore => method;
        protected override string HostCore => "localhost";
        protected override string PeerCore => "ipv4:127.0.0.1:50000";
        protected override DateTime DeadlineCore => DateTime.MaxValue;
        protected override Metadata RequestHeadersCore => headers;
        protected override CancellationToken CancellationTokenCore => CancellationToken.None;
        protected override Metadata ResponseTrailersCore { get; } = [];
        protected override Status StatusCore { get; set; }
        protected override WriteOptions? WriteOptionsCore { get; set; }
        protected override AuthContext AuthContextCore => new(null, []);
        protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();
        protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
    }
}
