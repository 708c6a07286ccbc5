using Graft.Backbone.Model;

namespace Graft.Backbone.Tests;

public sealed class ProfileTests
{
    [Fact]
    public void The_example_profile_file_describes_the_same_preprocessing_as_the_built_in_vgg16()
    {
        var options = new BackboneOptions { ProfilePath = "profiles/vgg16-torchvision.json" };

        var fromFile = BackboneProfiles.Resolve(options, AppContext.BaseDirectory);

        var builtIn = BackboneProfiles.Resolve(new BackboneOptions { Profile = "vgg16" }, AppContext.BaseDirectory);
        Assert.Equal(builtIn.DescribePreprocessing(), fromFile.DescribePreprocessing());
        Assert.Equal(builtIn.ModelPath, fromFile.ModelPath);
        Assert.Null(fromFile.CutTensor);
    }

    [Fact]
    public void An_inline_definition_with_bad_values_is_refused_naming_each_problem()
    {
        var options = new BackboneOptions { Definition = new BackboneProfile { Name = "x", ModelPath = "m.onnx", Mean = [1f, 2f], Std = [0f, 1f, 1f] } };

        var e = Assert.Throws<InvalidOperationException>(() => BackboneProfiles.Resolve(options, AppContext.BaseDirectory));

        Assert.Contains("Mean has 2 values", e.Message);
        Assert.Contains("Std values must be positive", e.Message);
    }

    [Fact]
    public void The_model_path_option_overrides_the_profile_without_changing_the_configured_definition()
    {
        var definition = BackboneProfiles.Vgg16();
        var options = new BackboneOptions { Definition = definition, ModelPath = "/models/other.onnx" };

        var profile = BackboneProfiles.Resolve(options, AppContext.BaseDirectory);

        Assert.Equal("/models/other.onnx", profile.ModelPath);
        Assert.Equal("models/vgg16.onnx", definition.ModelPath);
    }
}
