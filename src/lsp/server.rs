//! The message loop: the handshake, then requests and notifications in the
//! order they come, and diagnostics published whenever the queue runs dry.

use std::panic::{AssertUnwindSafe, catch_unwind};

use lsp_server::{ErrorCode, Message, Notification, Request, Response};
use lsp_types::request::{
    Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest,
    PrepareRenameRequest, References, Rename,
};
use lsp_types::{
    CompletionOptions, CompletionResponse, DidChangeTextDocumentParams, DidCloseTextDocumentParams,
    DidOpenTextDocumentParams, DidSaveTextDocumentParams, DocumentSymbolResponse,
    GotoDefinitionResponse, HoverProviderCapability, InitializeResult, OneOf, Position,
    PositionEncodingKind, PrepareRenameResponse, RenameOptions, SaveOptions, ServerCapabilities,
    ServerInfo, TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions,
    TextDocumentSyncSaveOptions, Url,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::analysis::Analysis;
use super::position::{offset, path_of};
use super::transport::{log, send, stdin_messages};
use super::workspace::Workspace;
use super::{completion, formatting, hover, navigation, symbols};
use crate::source::FileId;
use crate::syntax::ParseOptions;

/// Runs the server until the client says `exit` or closes its end. The
/// exit status is 0 after a `shutdown` request, else 1, as the protocol asks.
pub(crate) fn serve(parse: ParseOptions) -> u8 {
    let messages = stdin_messages();
    let mut server = Server {
        ws: Workspace::new(
            std::env::var_os("SLIPWAY_LSP_TIMING").is_some_and(|v| !v.is_empty()),
            parse,
        ),
        initialized: false,
        shutdown: false,
    };
    while let Ok(first) = messages.recv() {
        // Everything already waiting is handled before checking again: a
        // burst of edits is checked once.
        let batch: Vec<Message> = std::iter::once(first).chain(messages.try_iter()).collect();
        for msg in batch {
            if let Some(code) = server.message(msg) {
                return code;
            }
        }
        server.flush();
    }
    u8::from(!server.shutdown)
}

struct Server {
    ws: Workspace,
    initialized: bool,
    shutdown: bool,
}

impl Server {
    /// Handles one message; `Some(status)` to exit. A bug that panics
    /// answers the request with an error instead of ending the server.
    fn message(&mut self, msg: Message) -> Option<u8> {
        let request = match &msg {
            Message::Request(r) => Some((r.id.clone(), r.method.clone())),
            _ => None,
        };
        match catch_unwind(AssertUnwindSafe(|| self.dispatch(msg))) {
            Ok(exit) => exit,
            Err(_) => {
                if let Some((id, method)) = request {
                    send(Response::new_err(
                        id,
                        ErrorCode::InternalError as i32,
                        format!("internal error while answering `{method}`"),
                    ));
                }
                None
            }
        }
    }

    fn dispatch(&mut self, msg: Message) -> Option<u8> {
        match msg {
            Message::Request(req) => self.request(req),
            Message::Notification(n) => return self.notification(n),
            // The server sends no requests, so expects no responses.
            Message::Response(_) => {}
        }
        None
    }

    fn flush(&mut self) {
        for params in self.ws.flush() {
            send(Notification::new(
                "textDocument/publishDiagnostics".into(),
                params,
            ));
        }
    }

    fn request(&mut self, req: Request) {
        let fail = |id, code: ErrorCode, message: &str| {
            send(Response::new_err(id, code as i32, message.to_string()));
        };
        if req.method == "initialize" {
            if self.initialized {
                return fail(req.id, ErrorCode::InvalidRequest, "already initialized");
            }
            self.initialized = true;
            self.ws.folders = folders(&req.params);
            let result = InitializeResult {
                capabilities: capabilities(),
                server_info: Some(ServerInfo {
                    name: "slipway".into(),
                    version: Some(env!("CARGO_PKG_VERSION").into()),
                }),
            };
            return send(Response::new_ok(req.id, result));
        }
        if !self.initialized {
            return fail(
                req.id,
                ErrorCode::ServerNotInitialized,
                "not initialized yet",
            );
        }
        if self.shutdown {
            return fail(req.id, ErrorCode::InvalidRequest, "shutting down");
        }
        if req.method == "shutdown" {
            self.shutdown = true;
            return send(Response::new_ok(req.id, ()));
        }
        // Answers are about the latest text.
        self.flush();
        let ws = &self.ws;
        match req.method.as_str() {
            "textDocument/completion" => reply::<Completion>(req, |p| {
                let pos = p.text_document_position;
                let trigger = p.context.and_then(|c| c.trigger_character);
                Ok(
                    at(ws, &pos.text_document.uri, pos.position).map(|(a, file, offset)| {
                        CompletionResponse::Array(completion::complete(
                            a,
                            file,
                            offset,
                            trigger.as_deref(),
                        ))
                    }),
                )
            }),
            "textDocument/hover" => reply::<HoverRequest>(req, |p| {
                let pos = p.text_document_position_params;
                Ok(at(ws, &pos.text_document.uri, pos.position)
                    .and_then(|(a, file, offset)| hover::hover(a, file, offset)))
            }),
            "textDocument/definition" => reply::<GotoDefinition>(req, |p| {
                let pos = p.text_document_position_params;
                Ok(at(ws, &pos.text_document.uri, pos.position)
                    .map(|(a, file, offset)| navigation::definition(a, file, offset))
                    .filter(|l| !l.is_empty())
                    .map(GotoDefinitionResponse::Array))
            }),
            "textDocument/references" => reply::<References>(req, |p| {
                let pos = p.text_document_position;
                Ok(
                    at(ws, &pos.text_document.uri, pos.position).map(|(a, file, offset)| {
                        navigation::references(a, file, offset, p.context.include_declaration)
                    }),
                )
            }),
            "textDocument/prepareRename" => reply::<PrepareRenameRequest>(req, |p| {
                let (a, file, offset) =
                    at(ws, &p.text_document.uri, p.position).ok_or("the document is not open")?;
                navigation::prepare_rename(a, file, offset)
                    .map(|r| Some(PrepareRenameResponse::Range(r)))
            }),
            "textDocument/rename" => reply::<Rename>(req, |p| {
                let pos = p.text_document_position;
                let (a, file, offset) = at(ws, &pos.text_document.uri, pos.position)
                    .ok_or("the document is not open")?;
                navigation::rename(a, file, offset, &p.new_name).map(Some)
            }),
            "textDocument/documentSymbol" => reply::<DocumentSymbolRequest>(req, |p| {
                Ok(ws.analysis(&p.text_document.uri).map(|(a, file)| {
                    DocumentSymbolResponse::Nested(symbols::document_symbols(a, file))
                }))
            }),
            "textDocument/formatting" => reply::<Formatting>(req, |p| {
                let uri = &p.text_document.uri;
                let text = match ws.doc(uri) {
                    Some(doc) => doc.text.clone(),
                    None => crate::model::read_source(&path_of(uri)).map_err(|e| e.to_string())?,
                };
                Ok(formatting::format(&text, ws.parse))
            }),
            _ => fail(
                req.id,
                ErrorCode::MethodNotFound,
                &format!("`{}` is not supported", req.method),
            ),
        }
    }

    fn notification(&mut self, n: Notification) -> Option<u8> {
        if n.method == "exit" {
            return Some(u8::from(!self.shutdown));
        }
        if !self.initialized {
            return None;
        }
        let method = n.method.clone();
        let parsed = match method.as_str() {
            "textDocument/didOpen" => serde_json::from_value::<DidOpenTextDocumentParams>(n.params)
                .map(|p| {
                    let d = p.text_document;
                    self.ws.open(d.uri, d.text, d.version);
                }),
            "textDocument/didChange" => {
                serde_json::from_value::<DidChangeTextDocumentParams>(n.params).map(|p| {
                    self.ws.change(
                        &p.text_document.uri,
                        p.text_document.version,
                        p.content_changes,
                    );
                })
            }
            "textDocument/didSave" => serde_json::from_value::<DidSaveTextDocumentParams>(n.params)
                .map(|p| self.ws.save(&p.text_document.uri, p.text)),
            "textDocument/didClose" => {
                serde_json::from_value::<DidCloseTextDocumentParams>(n.params)
                    .map(|p| self.ws.close(&p.text_document.uri))
            }
            // `initialized`, `$/cancelRequest` (answers come at once anyway),
            // settings and the rest need nothing.
            _ => Ok(()),
        };
        if let Err(e) = parsed {
            log(&format!("bad parameters for `{method}`: {e}"));
        }
        None
    }
}

/// Parses a request's parameters, answers, and sends the answer.
fn reply<R>(req: Request, answer: impl FnOnce(R::Params) -> Result<R::Result, String>)
where
    R: lsp_types::request::Request,
    R::Params: DeserializeOwned,
    R::Result: Serialize,
{
    let response = match serde_json::from_value::<R::Params>(req.params) {
        Err(e) => Response::new_err(
            req.id,
            ErrorCode::InvalidParams as i32,
            format!("bad parameters for `{}`: {e}", R::METHOD),
        ),
        Ok(params) => match answer(params) {
            Ok(result) => Response::new_ok(req.id, result),
            Err(message) => Response::new_err(req.id, ErrorCode::RequestFailed as i32, message),
        },
    };
    send(response);
}

/// The analysis holding a document, the document's id and the offset of a
/// position in it.
fn at<'w>(ws: &'w Workspace, uri: &Url, pos: Position) -> Option<(&'w Analysis, FileId, u32)> {
    let (a, file) = ws.analysis(uri)?;
    Some((a, file, offset(a.sources.get(file), pos)))
}

/// The workspace folders of `initialize`'s parameters (or its root), read
/// leniently: a client that sends odd ones still gets a server.
fn folders(params: &serde_json::Value) -> Vec<std::path::PathBuf> {
    let mut uris: Vec<&str> = params["workspaceFolders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["uri"].as_str())
        .collect();
    uris.extend(params["rootUri"].as_str());
    uris.into_iter()
        .filter_map(|u| Url::parse(u).ok())
        .map(|u| path_of(&u))
        .collect()
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(PositionEncodingKind::UTF16),
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::FULL),
                save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions {
                    include_text: Some(false),
                })),
                ..TextDocumentSyncOptions::default()
            },
        )),
        completion_provider: Some(CompletionOptions {
            // After `after ` and `, ` come stage names, after `${` and
            // `git.` values.
            trigger_characters: Some([" ", ",", "{", "."].map(String::from).to_vec()),
            ..CompletionOptions::default()
        }),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: lsp_types::WorkDoneProgressOptions::default(),
        })),
        ..ServerCapabilities::default()
    }
}
