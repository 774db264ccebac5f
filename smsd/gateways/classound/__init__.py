"""smsd.gateways.classound"""
