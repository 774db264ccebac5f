"""smsd.gateways"""
