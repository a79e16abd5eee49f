module lakehub.invalid/pause

go 1.26.0
