//! The `reservation.ReservationService` RPCs: each turns the wire request
//! into a domain value (abi), asks the store, and turns the answer back.
//! No business rules live here.

use std::{sync::Arc, time::Duration};

use abi::{
    AvailabilityRequest, Error, ListenFilter, MAX_AVAILABILITY_BYTES, NewBooking, NewReservation,
    ReservationFilter, ReservationQuery, ReservationUpdate, parse_booking_id, parse_id,
    pb::{self, reservation_service_server::ReservationService},
};
use futures::{StreamExt, stream::BoxStream};
use reservation::{Access, Rsvp};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, metadata::MetadataValue};

use crate::{
    auth::{caller, credentials},
    errors::status,
    limits::{Class, Limits, StreamSlot},
    streams::{self, StreamLimits},
};

/// The service over a store.
#[derive(Clone)]
pub struct RsvpService {
    access: Access,
    limits: Arc<Limits>,
    streams: StreamLimits,
}

impl RsvpService {
    /// Serves `store` to authenticated callers, each within its
    /// `limits`; at most `max_streams` Query and Listen streams are
    /// open at once, a stream whose client reads nothing for `stream_idle`
    /// ends, and open streams end when `shutdown` is cancelled.
    pub fn new(
        store: Arc<dyn Rsvp>,
        limits: Arc<Limits>,
        max_streams: usize,
        stream_idle: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        RsvpService {
            access: Access::new(store),
            limits,
            streams: StreamLimits::new(max_streams, stream_idle, shutdown),
        }
    }
}

/// `items`, keeping `slot` (a place among its caller's open streams)
/// until the stream is dropped.
fn holding<T: Send + 'static>(
    items: BoxStream<'static, T>,
    slot: Option<StreamSlot>,
) -> BoxStream<'static, T> {
    match slot {
        None => items,
        Some(slot) => items
            .map(move |item| {
                let _held = &slot;
                item
            })
            .boxed(),
    }
}

fn reservation(r: abi::Reservation) -> Option<pb::Reservation> {
    Some(r.into())
}

#[tonic::async_trait]
impl ReservationService for RsvpService {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let mut wire = request.into_inner();
        if let Some(asked) = wire.reservation.as_mut() {
            caller.fill_user_id(&mut asked.user_id);
        }
        let request = NewReservation::try_from(wire).map_err(status)?;
        let made = self
            .access
            .reserve(&caller, request)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReserveResponse {
            reservation: reservation(made),
        }))
    }

    async fn book(
        &self,
        request: Request<pb::BookRequest>,
    ) -> Result<Response<pb::BookResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let mut wire = request.into_inner();
        caller.fill_user_id(&mut wire.user_id);
        let booking = NewBooking::try_from(wire).map_err(status)?;
        let made = self.access.book(&caller, booking).await.map_err(status)?;
        Ok(Response::new(pb::BookResponse {
            booking: Some(made.into()),
        }))
    }

    async fn get_booking(
        &self,
        request: Request<pb::GetBookingRequest>,
    ) -> Result<Response<pb::GetBookingResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Read)?;
        let id = parse_booking_id(&request.into_inner().id).map_err(status)?;
        let booking = self.access.get_booking(&caller, id).await.map_err(status)?;
        Ok(Response::new(pb::GetBookingResponse {
            booking: Some(booking.into()),
        }))
    }

    async fn confirm_booking(
        &self,
        request: Request<pb::ConfirmBookingRequest>,
    ) -> Result<Response<pb::ConfirmBookingResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let id = parse_booking_id(&request.into_inner().id).map_err(status)?;
        let booking = self
            .access
            .confirm_booking(&caller, id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConfirmBookingResponse {
            booking: Some(booking.into()),
        }))
    }

    async fn cancel_booking(
        &self,
        request: Request<pb::CancelBookingRequest>,
    ) -> Result<Response<pb::CancelBookingResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let id = parse_booking_id(&request.into_inner().id).map_err(status)?;
        let booking = self
            .access
            .cancel_booking(&caller, id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CancelBookingResponse {
            booking: Some(booking.into()),
        }))
    }

    async fn check_in(
        &self,
        request: Request<pb::CheckInRequest>,
    ) -> Result<Response<pb::CheckInResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let id = parse_id(&request.into_inner().id).map_err(status)?;
        let arrived = self.access.check_in(&caller, id).await.map_err(status)?;
        Ok(Response::new(pb::CheckInResponse {
            reservation: reservation(arrived),
        }))
    }

    async fn check_out(
        &self,
        request: Request<pb::CheckOutRequest>,
    ) -> Result<Response<pb::CheckOutResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let id = parse_id(&request.into_inner().id).map_err(status)?;
        let left = self.access.check_out(&caller, id).await.map_err(status)?;
        Ok(Response::new(pb::CheckOutResponse {
            reservation: reservation(left),
        }))
    }

    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let id = parse_id(&request.into_inner().id).map_err(status)?;
        let confirmed = self.access.confirm(&caller, id).await.map_err(status)?;
        Ok(Response::new(pb::ConfirmResponse {
            reservation: reservation(confirmed),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let update = ReservationUpdate::try_from(request.into_inner()).map_err(status)?;
        let updated = self.access.update(&caller, update).await.map_err(status)?;
        Ok(Response::new(pb::UpdateResponse {
            reservation: reservation(updated),
        }))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let id = parse_id(&request.into_inner().id).map_err(status)?;
        let cancelled = self.access.cancel(&caller, id).await.map_err(status)?;
        Ok(Response::new(pb::CancelResponse {
            reservation: reservation(cancelled),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Read)?;
        let id = parse_id(&request.into_inner().id).map_err(status)?;
        let found = self.access.get(&caller, id).await.map_err(status)?;
        Ok(Response::new(pb::GetResponse {
            reservation: reservation(found),
        }))
    }

    type QueryStream = BoxStream<'static, Result<pb::Reservation, Status>>;

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let caller = caller(&request)?;
        let credentials = credentials(&request);
        self.limits.admit(&caller, Class::Read)?;
        let query = ReservationQuery::try_from(request.into_inner()).map_err(status)?;
        let slot = self.limits.open_stream(&caller)?;
        let rows = self.access.query(&caller, query).await.map_err(status)?;
        let rows = holding(rows, slot);
        Ok(Response::new(streams::query(
            rows,
            &self.streams,
            credentials,
        )?))
    }

    async fn filter(
        &self,
        request: Request<pb::FilterRequest>,
    ) -> Result<Response<pb::FilterResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Read)?;
        let filter = ReservationFilter::try_from(request.into_inner()).map_err(status)?;
        let page = self.access.filter(&caller, filter).await.map_err(status)?;
        Ok(Response::new(page.into()))
    }

    async fn availability(
        &self,
        request: Request<pb::AvailabilityRequest>,
    ) -> Result<Response<pb::AvailabilityResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Read)?;
        let request = AvailabilityRequest::try_from(request.into_inner()).map_err(status)?;
        let answer = self
            .access
            .availability(&caller, request)
            .await
            .map_err(status)?;
        let answer = pb::AvailabilityResponse::from(answer);
        if prost::Message::encoded_len(&answer) > MAX_AVAILABILITY_BYTES {
            return Err(status(Error::invalid(
                "resource_ids",
                "the answer would exceed 4 MiB: ask for fewer resources, a shorter window or \
                 a longer slot_step",
            )));
        }
        Ok(Response::new(answer))
    }

    type ListenStream = BoxStream<'static, Result<pb::ReservationChange, Status>>;

    async fn listen(
        &self,
        request: Request<pb::ListenRequest>,
    ) -> Result<Response<Self::ListenStream>, Status> {
        let caller = caller(&request)?;
        let credentials = credentials(&request);
        self.limits.admit(&caller, Class::Read)?;
        let filter = ListenFilter::try_from(request.into_inner()).map_err(status)?;
        let after = filter.after_change_id;
        let slot = self.limits.open_stream(&caller)?;
        // Where the stream starts, named in a header: "from now" is read
        // before the stream subscribes, so resuming from it misses nothing.
        let from = match after {
            Some(after) => after,
            None => self.access.changes_through().await.map_err(status)?,
        };
        let changes = self.access.listen(&caller, filter).await.map_err(status)?;
        let changes = holding(changes, slot);
        let mut response = Response::new(streams::listen(
            changes,
            Some(from),
            &self.streams,
            credentials,
        )?);
        response
            .metadata_mut()
            .insert(abi::AFTER_CHANGE_ID, MetadataValue::from(from));
        Ok(response)
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Read)?;
        Ok(Response::new(pb::WhoAmIResponse {
            principal: caller
                .principal()
                .map(ToString::to_string)
                .unwrap_or_default(),
            role: pb::Role::from(caller.role()).into(),
            auth: credentials(&request).method().to_string(),
        }))
    }
}
