using Graft.Gateway;
using Graft.Gateway.Http;
using Graft.Gateway.Services;
using Graft.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddGateway();

var app = builder.Build();
app.MapGrpcService<GatewayService>();
app.MapDefaultEndpoints();
app.MapGatewayHttp();
app.Run();
