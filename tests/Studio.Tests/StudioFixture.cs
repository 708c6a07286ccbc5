using System.Net.Http.Headers;
using System.Text.Json;
using Graft.Testing;
using Microsoft.Playwright;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Graft.Studio.Tests;

/// <summary>One stack (three processes) and one headless chromium for every test here, plus one classifier trained
/// once over HTTP for the tests that only need a head to exist.</summary>
public sealed class StudioFixture : IAsyncLifetime
{
    public const string ChromiumPath = "/usr/bin/chromium";

    /// <summary>Test-size limit on images per training call, so the 413 test sends a few hundred tiny parts, not 100 000.</summary>
    public const int MaxTrainExamples = 300;

    public static readonly string[] Classes = ["bag", "sneaker", "trouser"];

    public const string SharedHead = "garments";

    private readonly Lazy<Task<string>> _sharedHead;
    private IPlaywright? _playwright;

    public StudioFixture() => _sharedHead = new Lazy<Task<string>>(TrainSharedHeadAsync);

    public ServiceStack Stack { get; private set; } = null!;

    public IBrowser Browser { get; private set; } = null!;

    /// <summary>The gateway's HTTP/1.1 port: REST, uploads, OIP, the studio.</summary>
    public Uri Http => Stack.Gateway.HttpAddress;

    public string AdminToken => Stack.Options.AdminToken!;

    public IReadOnlyList<SampleImages.Sample> Train { get; } = SampleImages.Load("train", Classes);

    public IReadOnlyList<SampleImages.Sample> Test { get; } = SampleImages.Load("test", Classes);

    /// <summary>Folder for screenshots of the main screens, when GRAFT_STUDIO_SCREENSHOTS names one (see docs/studio).</summary>
    public static string? ScreenshotFolder => Environment.GetEnvironmentVariable("GRAFT_STUDIO_SCREENSHOTS") is { Length: > 0 } f
        ? Path.GetFullPath(f, RepositoryLayout.Root) : null;

    public async Task InitializeAsync()
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new InvalidOperationException(
                $"The browser tests drive Debian's chromium at {ChromiumPath}, which is missing: install the apt package 'chromium' (apt-get install chromium). .ci/run does this.");
        }
        // Waits are event-based; their ceiling is generous because several builds and test runs may share two cores.
        Assertions.SetDefaultExpectTimeout(60_000);
        var browserStart = Task.Run(async () =>
        {
            _playwright = await Playwright.CreateAsync();
            Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = ChromiumPath,
                Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            });
        });
        Stack = await ServiceStack.StartAsync(new ServiceStackOptions
        {
            GatewayEnvironment = new Dictionary<string, string>
            {
                ["Graft__Gateway__MaxTrainExamples"] = MaxTrainExamples.ToString(System.Globalization.CultureInfo.InvariantCulture),
            },
        });
        await browserStart;
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.CloseAsync();
        }
        _playwright?.Dispose();
        if (Stack is not null)
        {
            await Stack.DisposeAsync();
        }
    }

    public HttpClient Client(string? token = null)
    {
        var client = new HttpClient { BaseAddress = Http, Timeout = TimeSpan.FromMinutes(5) };
        if (token is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        return client;
    }

    /// <summary>A classifier over <see cref="Classes"/>, trained once over HTTP on first use; returns its name.</summary>
    public Task<string> SharedHeadAsync() => _sharedHead.Value;

    private async Task<string> TrainSharedHeadAsync()
    {
        var (status, lines) = await TrainOverHttpAsync(SharedHead, Train.Where((_, i) => i % 2 == 0).Select(s => ($"class:{s.Label}", s.Path)), epochs: 15);
        Assert.True(status == 200 && lines[^1].GetProperty("phase").GetString() == "TRAIN_PHASE_PUBLISHED",
            $"training {SharedHead} failed: {status} {string.Join('\n', lines)}\n{Stack.Diagnostics()}");
        return SharedHead;
    }

    /// <summary>POST /v1/heads/{name}/train with one file part per image; returns the status and the NDJSON lines.</summary>
    public async Task<(int Status, List<JsonElement> Lines)> TrainOverHttpAsync(string name, IEnumerable<(string Field, string Path)> images, int epochs, string? token = null)
    {
        using var client = Client(token ?? AdminToken);
        using var form = new MultipartFormDataContent
        {
            { new StringContent($"{{\"epochs\": {epochs}}}"), "spec" },
        };
        foreach (var (field, path) in images)
        {
            var part = new ByteArrayContent(await File.ReadAllBytesAsync(path));
            part.Headers.ContentType = new MediaTypeHeaderValue("image/png");
            form.Add(part, field, Path.GetFileName(path));
        }
        using var response = await client.PostAsync($"/v1/heads/{name}/train", form);
        var body = await response.Content.ReadAsStringAsync();
        var lines = body.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        return ((int)response.StatusCode, lines);
    }
}

[CollectionDefinition(Name)]
public sealed class StudioCollection : ICollectionFixture<StudioFixture>
{
    public const string Name = "studio stack";
}
