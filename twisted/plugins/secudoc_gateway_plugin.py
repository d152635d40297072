from twisted.application.service import ServiceMaker

secudocGateway = ServiceMaker(
    "secudoc-gateway",
    "secudoc_gateway.tap",
    "Mail gateway: attachments out, download link in.",
    "secudoc-gateway",
)
