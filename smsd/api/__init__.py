"""smsd.api"""
