"""Binary formats the box writes and tools read, one module per format, each declared once with
construct beside its spec notes. Leaves: they import nothing of the runtime (a block device is
only an annotation), so `ipva dump show` or the image builder reads them without loading the
box's services.

    crc        crc32_trailed(): a construct followed by the CRC-32 of its bytes
    crashdump  the crash dump disk (IDE 1:1): dump slot, fault area, trace mirror, text form
"""
