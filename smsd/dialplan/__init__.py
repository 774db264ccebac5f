"""smsd.dialplan"""
