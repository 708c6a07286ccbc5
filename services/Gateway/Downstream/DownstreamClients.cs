using Graft.V1;
using Grpc.Core;
using Grpc.Net.Client.Balancer;
using Grpc.Net.Client.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Graft.Gateway.Downstream;

/// <summary>Typed gRPC clients for the backbone and the heads, from the client factory: round-robin over every
/// replica the address resolves to, short reconnect backoff, deadline and cancellation propagated from the incoming call.</summary>
public static class DownstreamClients
{
    public const string Backbone = "backbone";
    public const string Heads = "heads";

    public static IServiceCollection AddDownstreamClients(this IServiceCollection services, GatewayOptions options)
    {
        var backbone = Parse(options.BackboneAddress, Backbone, nameof(GatewayOptions.BackboneAddress));
        var heads = Parse(options.HeadsAddress, Heads, nameof(GatewayOptions.HeadsAddress));

        // One resolver for the "static" scheme serves every comma-separated address list, keyed by the target's host.
        var lists = new Dictionary<string, IReadOnlyList<BalancerAddress>>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, address) in new[] { (Backbone, backbone), (Heads, heads) })
        {
            if (address.StaticAddresses is { } list)
            {
                lists[name] = list;
            }
        }
        if (lists.Count > 0)
        {
            services.AddSingleton<ResolverFactory>(new StaticResolverFactory(uri =>
                lists.TryGetValue(uri.Host, out var list) ? list : throw new InvalidOperationException($"No static address list named '{uri.Host}'.")));
        }

        services.AddGrpcClient<Backbone.BackboneClient>(Backbone, o => o.Address = backbone.Target)
            .ConfigureChannel((sp, c) => Configure(c, backbone, sp))
            .EnableCallContextPropagation(o => o.SuppressContextNotFoundErrors = true);
        services.AddGrpcClient<Heads.HeadsClient>(Heads, o => o.Address = heads.Target)
            .ConfigureChannel((sp, c) => Configure(c, heads, sp))
            .EnableCallContextPropagation(o => o.SuppressContextNotFoundErrors = true);

        services.AddDownstreamResilience(Backbone);
        services.AddDownstreamResilience(Heads);
        return services;
    }

    private static DownstreamAddress Parse(string text, string name, string key) =>
        DownstreamAddress.TryParse(text, name, out var address, out var error)
            ? address
            : throw new OptionsValidationException(GatewayOptions.Section, typeof(GatewayOptions), [$"{GatewayOptions.Section}:{key}: {error}"]);

    private static void Configure(Grpc.Net.Client.GrpcChannelOptions channel, DownstreamAddress address, IServiceProvider services)
    {
        var limits = services.GetRequiredService<IOptions<Graft.ServiceDefaults.LimitOptions>>().Value;
        var gateway = services.GetRequiredService<IOptions<GatewayOptions>>().Value;
        channel.ServiceConfig = new ServiceConfig { LoadBalancingConfigs = { new RoundRobinConfig() } };
        channel.MaxReconnectBackoff = gateway.MaxReconnectBackoff;
        channel.InitialReconnectBackoff = TimeSpan.FromMilliseconds(Math.Min(250, gateway.MaxReconnectBackoff.TotalMilliseconds));
        channel.MaxReceiveMessageSize = limits.MaxMessageBytes;
        channel.MaxSendMessageSize = limits.MaxMessageBytes;
        // Resolver targets (dns:///, static://) carry no http/https, so say whether the connection is encrypted.
        if (address.Target.Scheme is not ("http" or "https"))
        {
            channel.Credentials = address.IsSecure ? ChannelCredentials.SecureSsl : ChannelCredentials.Insecure;
        }
    }
}
