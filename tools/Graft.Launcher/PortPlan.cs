using System.Net;
using System.Net.Sockets;

namespace Graft.Launcher;

/// <summary>The two ports of one service: gRPC (HTTP/2) and, for <c>/metrics</c> and <c>/healthz/*</c>, HTTP/1.</summary>
public sealed record ServicePorts(int Grpc, int Http)
{
    public const string Host = "127.0.0.1";

    public Uri GrpcAddress => new($"http://{Host}:{Grpc}");

    public Uri HttpAddress => new($"http://{Host}:{Http}");
}

/// <summary>Where a stack's three services listen: either fixed from a base port (Gateway base/base+1, Backbone
/// base+10/+11, Heads base+20/+21, as <c>graft up</c> documents) or free ports asked of the OS (tests, benchmarks).</summary>
public sealed record PortPlan(ServicePorts Backbone, ServicePorts Heads, ServicePorts Gateway)
{
    public const int DefaultBase = 5100;

    private static readonly HashSet<int> Handed = [];

    /// <summary>The documented layout from a base port.</summary>
    public static PortPlan FromBase(int basePort) => new(
        new ServicePorts(basePort + 10, basePort + 11), new ServicePorts(basePort + 20, basePort + 21), new ServicePorts(basePort, basePort + 1));

    /// <summary>Six free loopback ports.</summary>
    public static PortPlan Free() => new(FreeService(), FreeService(), FreeService());

    public static ServicePorts FreeService() => new(FreePort(), FreePort());

    public ServicePorts this[GraftService service] => service switch
    {
        GraftService.Backbone => Backbone,
        GraftService.Heads => Heads,
        _ => Gateway,
    };

    /// <summary>Every port of the plan, with what binds it.</summary>
    public IEnumerable<(int Port, string Use)> All()
    {
        foreach (var service in new[] { GraftService.Gateway, GraftService.Backbone, GraftService.Heads })
        {
            yield return (this[service].Grpc, $"{service} gRPC");
            yield return (this[service].Http, $"{service} HTTP");
        }
    }

    /// <summary>A loopback port the OS says is free, never the same twice in this process (parallel stacks do not collide).</summary>
    public static int FreePort()
    {
        lock (Handed)
        {
            while (true)
            {
                using var listener = new TcpListener(IPAddress.Loopback, 0);
                listener.Start();
                var port = ((IPEndPoint)listener.LocalEndpoint).Port;
                if (Handed.Add(port))
                {
                    return port;
                }
            }
        }
    }

    /// <summary>Whether a loopback port can be bound now, with Kestrel's reuse rule (TIME_WAIT connections of a
    /// stack that just stopped do not count).</summary>
    public static bool IsFree(int port)
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
