"""The data wing: the files on disk (IDX, a folder of images) read, checked and turned into the
normalized splits of bytes. No imports here: a stage that needs no PyTorch never loads it."""
