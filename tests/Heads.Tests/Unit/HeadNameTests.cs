using Graft.Heads.Registry;

namespace Graft.Heads.Tests.Unit;

public sealed class HeadNameTests
{
    [Theory]
    [InlineData("a")]
    [InlineData("body-length")]
    [InlineData("fashion.v2_final")]
    [InlineData("0abc")]
    public void Legal_names_are_accepted(string name) => Assert.Null(HeadName.Problem(name));

    [Theory]
    [InlineData("")]
    [InlineData("..")]
    [InlineData("a..b")]
    [InlineData("../etc")]
    [InlineData("a/b")]
    [InlineData("Upper")]
    [InlineData("-leading-dash")]
    [InlineData(".hidden")]
    [InlineData("trailing-newline\n")]
    [InlineData("space name")]
    public void Illegal_names_are_refused_with_the_pattern_in_the_message(string name)
    {
        var problem = HeadName.Problem(name);

        Assert.NotNull(problem);
        Assert.Contains(HeadName.Pattern, problem);
    }

    [Fact]
    public void Names_longer_than_63_characters_are_refused()
    {
        Assert.True(HeadName.IsValid(new string('a', 63)));
        Assert.False(HeadName.IsValid(new string('a', 64)));
    }
}
