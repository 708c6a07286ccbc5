using Graft.Backbone;
using Graft.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddBackbone();

var app = builder.Build();
app.MapDefaultEndpoints();
app.MapBackbone();
app.Run();
