using Graft.Reliability.Tests.Support;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace Graft.Reliability.Tests;

/// <summary>Who may do what, what the logs hold, and what a client may learn from a failure.</summary>
[Collection(ReliabilityCollection.Name)]
public sealed class SecurityTests(ReliabilityFixture fixture, ITestOutputHelper output)
{
    private ReliabilityStack Stack => fixture.Stack;

    private static DateTime Deadline() => DateTime.UtcNow + ReliabilityFixture.CallDeadline;

    public static TheoryData<string> Credentials => new() { "none", "wrong token", "predict token", "empty bearer", "basic scheme" };

    [Theory]
    [MemberData(nameof(Credentials))]
    public async Task Admin_calls_without_the_admin_token_are_unauthenticated_and_change_nothing(string credentials)
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var headers = credentials switch
        {
            "none" => [],
            "wrong token" => ServiceStack.Bearer("wrong-" + Guid.NewGuid().ToString("N")),
            "predict token" => Stack.PredictHeaders,
            "empty bearer" => new Metadata { { "authorization", "Bearer " } },
            _ => new Metadata { { "authorization", "Basic " + Convert.ToBase64String("admin:admin"u8.ToArray()) } },
        };
        var client = fixture.Client;
        var before = await client.GetHeadAsync(new GetHeadRequest { Name = ReliabilityFixture.Classifier }, Stack.PredictHeaders, Deadline());

        // Act + Assert
        var delete = await Statuses.ExpectAsync(StatusCode.Unauthenticated,
            () => client.DeleteHeadAsync(new DeleteHeadRequest { Name = ReliabilityFixture.Classifier }, headers, Deadline()).ResponseAsync, $"delete with {credentials}");
        await Statuses.ExpectAsync(StatusCode.Unauthenticated,
            () => client.ActivateHeadAsync(new ActivateVersionRequest { Name = ReliabilityFixture.Classifier, Version = 1 }, headers, Deadline()).ResponseAsync, $"activate with {credentials}");
        await Statuses.ExpectAsync(StatusCode.Unauthenticated, async () =>
        {
            var progress = await fixture.TrainAsync(new HeadSpec { Name = "intruder", Kind = HeadKind.Regressor, Epochs = 1 },
                fixture.Train.Take(5).Select(ReliabilityFixture.Measured), headers);
            Assert.Fail($"training without the admin token went on to {progress.LastOrDefault()?.Phase}");
        }, $"train with {credentials}");

        var after = await client.GetHeadAsync(new GetHeadRequest { Name = ReliabilityFixture.Classifier }, Stack.PredictHeaders, Deadline());
        Assert.Equal(before.ActiveVersion, after.ActiveVersion);
        Assert.Equal(before.Versions.Count, after.Versions.Count);
        await Statuses.ExpectAsync(StatusCode.NotFound,
            () => client.GetHeadAsync(new GetHeadRequest { Name = "intruder" }, Stack.PredictHeaders, Deadline()).ResponseAsync, "the intruder head does not exist");
        Assert.False(Directory.Exists(Path.Combine(Stack.RegistryDirectory, "intruder")));
        Figure($"admin calls (train, delete, activate) with {credentials}: UNAUTHENTICATED \"{delete.Status.Detail}\"; nothing changed");
    }

    [Fact]
    public async Task Predict_without_the_predict_token_is_unauthenticated_and_the_admin_token_is_accepted()
    {
        await Statuses.ExpectAsync(StatusCode.Unauthenticated,
            () => fixture.Client.PredictAsync(new PredictRequest { Image = fixture.TestImage(), Heads = { ReliabilityFixture.Classifier } }, deadline: Deadline()).ResponseAsync,
            "predict without a token");
        await Statuses.ExpectAsync(StatusCode.Unauthenticated,
            () => fixture.Client.ListHeadsAsync(new ListHeadsRequest(), ServiceStack.Bearer("nope"), Deadline()).ResponseAsync, "list with a wrong token");

        var withAdmin = await fixture.Client.PredictAsync(new PredictRequest { Image = fixture.TestImage(), Heads = { ReliabilityFixture.Classifier } }, Stack.AdminHeaders, Deadline());

        Assert.Single(withAdmin.Results);
    }

    [Fact]
    public async Task No_token_ever_appears_in_any_service_log()
    {
        // Arrange: calls that carry every token, accepted and refused, so there is something a careless log line could hold.
        var wrong = "wrong-" + Guid.NewGuid().ToString("N");
        await fixture.Client.ListHeadsAsync(new ListHeadsRequest(), Stack.AdminHeaders, Deadline());
        await fixture.PredictAsync(fixture.TestImage(), ReliabilityFixture.Classifier);
        await Statuses.ExpectAsync(StatusCode.Unauthenticated,
            () => fixture.Client.DeleteHeadAsync(new DeleteHeadRequest { Name = ReliabilityFixture.Classifier }, ServiceStack.Bearer(wrong), Deadline()).ResponseAsync, "wrong token");
        // The Gateway's refusal is the last line these calls log: once it is captured, the output is complete.
        await Eventually.TrueAsync(() => Stack.AllOutput.Any(l => l.Contains("Rejected /graft.v1.Gateway/DeleteHead", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(30), "the Gateway's log line for the refused call");

        // Act
        var lines = Stack.AllOutput.ToList();

        // Assert
        Assert.True(lines.Count > 20, $"the logs were captured ({lines.Count} lines)");
        Assert.Contains(lines, l => l.Contains("Rejected /graft.v1.Gateway/DeleteHead", StringComparison.Ordinal));
        foreach (var secret in new[] { Stack.AdminToken, Stack.PredictToken, wrong })
        {
            Assert.DoesNotContain(lines, l => l.Contains(secret, StringComparison.Ordinal));
            Assert.DoesNotContain(lines, l => l.Contains(secret[..16], StringComparison.Ordinal));
        }
        Figure($"token grep over {lines.Count} captured log lines of {Stack.Processes.Count} processes: admin, predict and rejected tokens found 0 times");
    }

    public static TheoryData<string, string> RawMethods => new()
    {
        { "gateway", "/graft.v1.Gateway/Predict" },
        { "gateway", "/graft.v1.Gateway/GetHead" },
        { "backbone", "/graft.v1.Backbone/Extract" },
        { "heads", "/graft.v1.Heads/Predict" },
        { "heads", "/graft.v1.Heads/ActivateVersion" },
    };

    [Theory]
    [MemberData(nameof(RawMethods))]
    public async Task A_malformed_protobuf_message_gets_a_status_without_internals_and_the_service_keeps_serving(string service, string method)
    {
        // Arrange: bytes that are not a valid protobuf message (a length-delimited field running past the end).
        var channel = service switch { "gateway" => Stack.Gateway.Channel, "backbone" => Stack.Backbone.Channel, _ => Stack.HeadsA.Channel };
        var raw = new Method<byte[], byte[]>(MethodType.Unary, method.Split('/')[1], method.Split('/')[2],
            Marshallers.Create(b => b, b => b), Marshallers.Create(b => b, b => b));
        byte[] garbage = [0x0A, 0xFF, 0xFF, 0xFF, 0x0F, 0x01, 0x02, 0x03];

        // Act
        var e = await Assert.ThrowsAsync<RpcException>(() =>
            channel.CreateCallInvoker().AsyncUnaryCall(raw, null, new CallOptions(Stack.AdminHeaders, Deadline()), garbage).ResponseAsync);
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(30));

        // Assert
        Assert.NotEqual(StatusCode.OK, e.StatusCode);
        Statuses.AssertReadable(e, method);
        Figure($"malformed protobuf to {method}: {e.StatusCode} \"{e.Status.Detail}\"; service kept serving");
    }

    [Fact]
    public async Task A_downstream_that_hangs_up_or_is_not_there_is_reported_as_unavailable_without_exception_names_or_internal_addresses()
    {
        // Arrange: a second gateway whose backbone accepts TCP connections and hangs up once the client speaks (the
        // subchannel looks connected, then the call fails inside the gRPC client) and whose heads address has nothing
        // listening.
        using var hangUp = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        hangUp.Start();
        using var stopHangingUp = new CancellationTokenSource();
        var hangingUp = Task.Run(async () =>
        {
            while (!stopHangingUp.IsCancellationRequested)
            {
                // Hang up once the client has spoken, so the connection looked fine until the call started.
                using var socket = await hangUp.AcceptSocketAsync(stopHangingUp.Token);
                await socket.ReceiveAsync(new byte[1024], System.Net.Sockets.SocketFlags.None, stopHangingUp.Token);
                socket.Close(0);
            }
        });
        var (deadBackbone, deadHeads) = (((System.Net.IPEndPoint)hangUp.LocalEndpoint).Port, PortPlan.FreePort());
        await using var gateway = TestProcesses.Create(GraftService.Gateway, new Dictionary<string, string>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["Graft__Gateway__BackboneAddress"] = $"http://127.0.0.1:{deadBackbone}",
            ["Graft__Gateway__HeadsAddress"] = $"http://127.0.0.1:{deadHeads}",
            ["Graft__Gateway__AdminToken"] = Stack.AdminToken,
        });
        await gateway.StartAsync(ReliabilityStack.ReadyTimeout);
        var client = new V1.Gateway.GatewayClient(gateway.Channel);

        // Act
        var predict = await Statuses.ExpectAsync(StatusCode.Unavailable,
            () => client.PredictAsync(new PredictRequest { Image = fixture.TestImage() }, deadline: Deadline()).ResponseAsync, "predict with the backbone down");
        var list = await Statuses.ExpectAsync(StatusCode.Unavailable,
            () => client.ListHeadsAsync(new ListHeadsRequest(), deadline: Deadline()).ResponseAsync, "list with the heads down");

        await stopHangingUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => hangingUp);

        // Assert: the client learns what is down and what to do, not the gateway's internals.
        foreach (var e in new[] { predict, list })
        {
            Figure($"dead downstream: {e.StatusCode} \"{e.Status.Detail}\"");
            Assert.DoesNotContain("Exception", e.Status.Detail, StringComparison.Ordinal);
            Assert.DoesNotContain($":{deadBackbone}", e.Status.Detail, StringComparison.Ordinal);
            Assert.DoesNotContain($":{deadHeads}", e.Status.Detail, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task An_unknown_method_is_unimplemented()
    {
        var raw = new Method<byte[], byte[]>(MethodType.Unary, "graft.v1.Gateway", "DropTables", Marshallers.Create(b => b, b => b), Marshallers.Create(b => b, b => b));

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            Stack.Gateway.Channel.CreateCallInvoker().AsyncUnaryCall(raw, null, new CallOptions(Stack.AdminHeaders, Deadline()), []).ResponseAsync);

        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }

    private void Figure(string line)
    {
        FigureLog.Add(line);
        output.WriteLine(line);
    }
}
