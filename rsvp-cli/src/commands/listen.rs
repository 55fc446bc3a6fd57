//! `rsvp listen`: changes as they happen, until interrupted.

use std::io::Write;

use abi::{ListenFilter, pb};
use futures::StreamExt;

use super::Context;
use crate::{
    cli::ListenArgs,
    client::call,
    error::CliError,
    exit::Exit,
    output::{Kind, Rows},
};

/// Prints every change the filter selects until Ctrl-C (exit 0) or the
/// stream ends with an error (which says where to resume).
///
/// # Errors
/// Invalid input, or a failed call.
pub async fn run(args: ListenArgs, cx: &Context, out: &mut impl Write) -> Result<(), CliError> {
    let request = pb::ListenRequest {
        user_id: args.user.unwrap_or_default(),
        resource_id: args.resource.unwrap_or_default(),
        after_change_id: args.after,
    };
    ListenFilter::try_from(request.clone())?;
    let mut client = cx.client().await?;
    // Where the stream starts (the server names it): a stream that ends
    // before its first change still says where to resume.
    let (from, mut stream) = call(&cx.server, cx.timeout, async {
        let answer = client.listen(request).await?;
        let from = abi::after_change_id(answer.metadata());
        Ok(answer.map(|stream| (from, stream)))
    })
    .await?;
    // Changes are shown as they come: the table cannot wait to be sized.
    let mut rows = Rows::new(cx.view, out, Kind::Changes, false);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut last = args.after.or(from);
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            change = stream.next() => match change {
                Some(Ok(change)) => {
                    last = Some(change.change_id);
                    rows.change(&change)?;
                }
                Some(Err(status)) => {
                    let mut e = CliError::from_status(status, &cx.server);
                    if let Some(id) = last
                        && !e.message.contains("resume with")
                    {
                        e.message.push_str(&format!(" (resume with --after {id})"));
                    }
                    return Err(e);
                }
                None => {
                    return Err(CliError::new(Exit::Unreachable, "the server ended the stream"));
                }
            },
        }
    }
    Ok(())
}
