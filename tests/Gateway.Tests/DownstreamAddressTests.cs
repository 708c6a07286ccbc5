using Graft.Gateway.Auth;
using Graft.Gateway.Downstream;

namespace Graft.Gateway.Tests;

public sealed class DownstreamAddressTests
{
    [Fact]
    public void A_single_http_address_is_used_as_it_is()
    {
        // Act
        var ok = DownstreamAddress.TryParse("http://127.0.0.1:5110", "backbone", out var address, out _);

        // Assert
        Assert.True(ok);
        Assert.Equal(new Uri("http://127.0.0.1:5110"), address!.Target);
        Assert.Null(address.StaticAddresses);
    }

    [Fact]
    public void A_comma_separated_list_becomes_a_static_target_with_every_replica()
    {
        // Act
        var ok = DownstreamAddress.TryParse("http://10.0.0.1:5110, http://10.0.0.2:5111", "backbone", out var address, out _);

        // Assert
        Assert.True(ok);
        Assert.Equal("static", address!.Target.Scheme);
        Assert.Equal("backbone", address.Target.Host);
        Assert.Equal(["10.0.0.1:5110", "10.0.0.2:5111"], address.StaticAddresses!.Select(a => $"{a.EndPoint.Host}:{a.EndPoint.Port}"));
        Assert.False(address.IsSecure);
    }

    [Fact]
    public void A_dns_target_for_a_headless_service_is_kept_for_the_dns_resolver()
    {
        // Act
        var ok = DownstreamAddress.TryParse("dns:///backbone-headless:5110", "backbone", out var address, out _);

        // Assert
        Assert.True(ok);
        Assert.Equal("dns", address!.Target.Scheme);
        Assert.Null(address.StaticAddresses);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not a uri")]
    [InlineData("http://a:1,https://b:2")]
    [InlineData("dns:///a:1,http://b:2")]
    public void Malformed_addresses_are_rejected_with_a_reason(string text)
    {
        // Act
        var ok = DownstreamAddress.TryParse(text, "backbone", out _, out var error);

        // Assert
        Assert.False(ok);
        Assert.False(string.IsNullOrWhiteSpace(error));
    }
}
