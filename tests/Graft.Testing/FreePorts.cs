using System.Net;
using System.Net.Sockets;

namespace Graft.Testing;

/// <summary>Free loopback TCP ports, asked of the OS (bind to port 0) so parallel stacks do not collide.</summary>
public static class FreePorts
{
    private static readonly HashSet<int> Handed = [];

    public static int Next()
    {
        lock (Handed)
        {
            while (true)
            {
                using var listener = new TcpListener(IPAddress.Loopback, 0);
                listener.Start();
                var port = ((IPEndPoint)listener.LocalEndpoint).Port;
                listener.Stop();
                // The OS may hand the same ephemeral port out again soon; never give it to two services of this run.
                if (Handed.Add(port))
                {
                    return port;
                }
            }
        }
    }
}
