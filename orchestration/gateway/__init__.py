"""Model gateway: aliases -> provider chains with routing, retries, breakers, budgets."""

from orchestration.gateway.config import GatewayConfig, Pricing, ProviderPolicy
from orchestration.gateway.factory import ProviderSpec, build_gateway
from orchestration.gateway.gateway import ModelGateway

__all__ = ["GatewayConfig", "ModelGateway", "Pricing", "ProviderPolicy", "ProviderSpec", "build_gateway"]
