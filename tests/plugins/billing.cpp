#include "billing.hpp"

FRAMEX_PLUGIN(billing::plugin,
              framex::plugin_metadata{.name = "billing",
                                      .version = "2.1.0",
                                      .description = "Taxes and invoices",
                                      .author = "framex tests",
                                      .url = "https://example.invalid/billing",
                                      .required_apis = {"echo.confess", "/api/v1/echo"}},
              framex::on_request<&billing::plugin::tax>("/billing/tax", {.params = {"cents"}, .func_api = true}),
              framex::on_request<&billing::plugin::make_invoice>(
                  "/billing/invoice", {.methods = {framex::http_method::post}, .func_api = true, .name = "invoice"}),
              framex::on_request<&billing::plugin::greet>("/billing/greet", {.params = {"name"}}),
              framex::on_request<&billing::plugin::countdown>("/billing/countdown", {.params = {"from"}}),
              framex::on_request<&billing::plugin::hold>("/billing/hold", {.params = {"value"}, .func_api = true}),
              framex::on_request<&billing::plugin::where>(framex::func_api));
