using Graft.V1;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Graft.Studio.Tests;

/// <summary>The studio in headless chromium against the real services: what a person does with no command line.</summary>
[Collection(StudioCollection.Name)]
public sealed class BrowserTests(StudioFixture fixture)
{
    private static readonly float Slow = 180_000; // generous: five builds and test runs share two cores

    /// <summary>Every request a page made outside the gateway (none is allowed: no CDN, no fonts, no analytics).</summary>
    private readonly List<string> _outside = [];

    [Fact]
    public async Task A_person_creates_a_classifier_from_dropped_images_trains_it_and_tries_a_held_out_image()
    {
        var page = await OpenStudioAsync(signIn: true);

        await page.GetByLabel("Head name").FillAsync("studio-shoes");
        await page.GetByLabel("Epochs").FillAsync("12");
        string[] classes = ["bag", "sneaker"];
        for (var i = 0; i < classes.Length; i++)
        {
            await page.GetByLabel($"Class {i + 1} name").FillAsync(classes[i]);
            var files = fixture.Train.Where(s => s.Label == classes[i]).Take(14).Select(s => s.Path);
            await page.Locator($"#class-files-{i + 1}").SetInputFilesAsync(files);
            await Expect(page.Locator("#classes .class").Nth(i)).ToContainTextAsync("14 pictures");
        }
        await Screenshot(page, "studio-create.png", "#train");

        await page.GetByRole(AriaRole.Button, new() { Name = "Train", Exact = true }).ClickAsync();

        await Expect(page.Locator("#progress-text")).ToContainTextAsync("Published studio-shoes version 1", new() { Timeout = Slow });
        await Expect(page.Locator("#result")).ToContainTextAsync("always guessing the most common class");
        await Expect(page.Locator("#result table.confusion")).ToBeVisibleAsync();
        Assert.True(await page.Locator("#loss-chart polyline").CountAsync() == 1, "the loss curve was not drawn");
        await Screenshot(page, "studio-trained.png", "#train");

        var heldOut = fixture.Test.First(s => s.Label == "sneaker");
        await page.Locator("#predict-file").SetInputFilesAsync(heldOut.Path);
        var answer = page.Locator("#prediction .answer[data-head='studio-shoes']");
        await Expect(answer.Locator("h3 strong")).ToHaveTextAsync("sneaker", new() { Timeout = Slow });
        Assert.Equal(2, await answer.Locator("meter").CountAsync());
        await Screenshot(page, "studio-try.png", "#try");
        await page.SetViewportSizeAsync(390, 844); // a phone
        await Screenshot(page, "studio-phone.png", "#try");
        Assert.True(await page.EvaluateAsync<bool>("document.documentElement.scrollWidth <= 390"), "the page scrolls sideways at phone width");
        await page.SetViewportSizeAsync(1000, 900);

        await Expect(page.Locator("#heads article[data-head='studio-shoes']")).ToContainTextAsync("serving v1");
        await Screenshot(page, "studio-models.png", "#models");
        Assert.Empty(_outside);
    }

    [Fact]
    public async Task A_person_rolls_a_head_back_to_its_older_version()
    {
        var images = fixture.Train.Where((_, i) => i % 4 == 0).Select(s => ($"class:{s.Label}", s.Path)).ToList();
        for (var round = 0; round < 2; round++)
        {
            var (status, lines) = await fixture.TrainOverHttpAsync("rollback", images, epochs: 3);
            Assert.True(status == 200, string.Join('\n', lines));
        }
        var page = await OpenStudioAsync(signIn: true);
        var head = page.Locator("#heads article[data-head='rollback']");
        await Expect(head).ToContainTextAsync("serving v2", new() { Timeout = Slow });

        await head.GetByRole(AriaRole.Button, new() { Name = "Activate v1" }).ClickAsync();

        await Expect(page.Locator("#notice")).ToContainTextAsync("rollback now serves version 1");
        await Expect(head).ToContainTextAsync("serving v1");
        var info = await fixture.Stack.GatewayClient.GetHeadAsync(new GetHeadRequest { Name = "rollback" }, fixture.Stack.PredictHeaders);
        Assert.Equal(1, info.ActiveVersion);

        page.Dialog += (_, dialog) => dialog.AcceptAsync();
        await head.GetByRole(AriaRole.Button, new() { Name = "Delete v2" }).ClickAsync();
        await Expect(page.Locator("#notice")).ToContainTextAsync("Version 2 of rollback deleted");
        info = await fixture.Stack.GatewayClient.GetHeadAsync(new GetHeadRequest { Name = "rollback" }, fixture.Stack.PredictHeaders);
        Assert.Equal([1], info.Versions.Select(v => v.Version));
        Assert.Empty(_outside);
    }

    [Fact]
    public async Task A_person_downloads_a_head_version_as_one_onnx_file_that_onnx_runtime_loads()
    {
        var head = await fixture.SharedHeadAsync();
        var info = await fixture.Stack.GatewayClient.GetHeadAsync(new GetHeadRequest { Name = head }, fixture.Stack.PredictHeaders);
        var page = await OpenStudioAsync(signIn: true);
        var card = page.Locator($"#heads article[data-head='{head}']");
        await Expect(card).ToContainTextAsync($"serving v{info.ActiveVersion}", new() { Timeout = Slow });
        var button = card.GetByRole(AriaRole.Button, new() { Name = $"Download ONNX v{info.ActiveVersion}" });

        var download = await page.RunAndWaitForDownloadAsync(() => button.ClickAsync(), new() { Timeout = Slow });

        Assert.Equal($"{head}-v{info.ActiveVersion}.onnx", download.SuggestedFilename);
        using (var session = new Microsoft.ML.OnnxRuntime.InferenceSession(await download.PathAsync()))
        {
            Assert.Equal(head, session.ModelMetadata.CustomMetadataMap["graft.head"]);
            Assert.Equal(["pixels"], session.InputMetadata.Keys);
        }
        await Expect(page.Locator("#notice")).ToContainTextAsync($"Downloaded {head}-v{info.ActiveVersion}.onnx");
        await Expect(button).ToBeEnabledAsync();
        Assert.Empty(_outside);
    }

    [Fact]
    public async Task A_bad_upload_is_refused_with_a_message_naming_the_file_and_a_missing_token_is_explained()
    {
        var notAnImage = Path.Combine(Path.GetTempPath(), $"notes-{Guid.NewGuid():N}.png");
        await File.WriteAllTextAsync(notAnImage, "these are notes, not a picture");
        try
        {
            var page = await OpenStudioAsync(signIn: false);
            await page.GetByLabel("Head name").FillAsync("bad-upload");
            await page.GetByLabel("Class 1 name").FillAsync("bag");
            await page.Locator("#class-files-1").SetInputFilesAsync(fixture.Train.Where(s => s.Label == "bag").Take(3).Select(s => s.Path));
            await page.GetByLabel("Class 2 name").FillAsync("trouser");
            await page.Locator("#class-files-2").SetInputFilesAsync([.. fixture.Train.Where(s => s.Label == "trouser").Take(3).Select(s => s.Path), notAnImage]);

            await page.GetByRole(AriaRole.Button, new() { Name = "Train", Exact = true }).ClickAsync();
            await Expect(page.Locator("#notice")).ToContainTextAsync("admin token", new() { Timeout = Slow });

            await page.GetByLabel("Admin token").FillAsync(fixture.AdminToken);
            await page.GetByRole(AriaRole.Button, new() { Name = "Use", Exact = true }).ClickAsync();
            await page.GetByRole(AriaRole.Button, new() { Name = "Train", Exact = true }).ClickAsync();

            var notice = page.Locator("#notice");
            await Expect(notice).ToContainTextAsync(Path.GetFileName(notAnImage), new() { Timeout = Slow });
            await Screenshot(page, "studio-refused.png");
            var heads = await fixture.Stack.GatewayClient.ListHeadsAsync(new ListHeadsRequest(), fixture.Stack.PredictHeaders);
            Assert.DoesNotContain(heads.Heads, h => h.Name == "bad-upload");
        }
        finally
        {
            File.Delete(notAnImage);
        }
    }

    private async Task<IPage> OpenStudioAsync(bool signIn)
    {
        var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1000, Height = 900 } });
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(60_000);
        var outside = _outside;
        page.Request += (_, request) =>
        {
            if (!request.Url.StartsWith(fixture.Http.GetLeftPart(UriPartial.Authority), StringComparison.Ordinal) && !request.Url.StartsWith("blob:", StringComparison.Ordinal) && !request.Url.StartsWith("data:", StringComparison.Ordinal))
            {
                outside.Add(request.Url);
            }
        };
        await page.GotoAsync(new Uri(fixture.Http, "/studio/").ToString());
        await Expect(page.Locator("#backbone")).ToContainTextAsync("Backbone:", new() { Timeout = Slow });
        if (signIn)
        {
            await page.GetByLabel("Admin token").FillAsync(fixture.AdminToken);
            await page.GetByRole(AriaRole.Button, new() { Name = "Use", Exact = true }).ClickAsync();
            await Expect(page.Locator("#notice")).ToContainTextAsync("Token saved");
        }
        return page;
    }

    /// <summary>Saves a screenshot of one section (or the visible page) when GRAFT_STUDIO_SCREENSHOTS names a folder.</summary>
    private static async Task Screenshot(IPage page, string name, string? section = null)
    {
        if (StudioFixture.ScreenshotFolder is not { } folder)
        {
            return;
        }
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, name);
        if (section is null)
        {
            await page.EvaluateAsync("window.scrollTo(0, 0)");
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = path });
        }
        else
        {
            await page.Locator(section).ScreenshotAsync(new LocatorScreenshotOptions { Path = path });
        }
    }
}
