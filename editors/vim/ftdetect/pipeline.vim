" slipway's .pipeline files.
autocmd BufRead,BufNewFile *.pipeline setfiletype pipeline
